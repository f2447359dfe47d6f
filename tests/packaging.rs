//! The container image as the Dockerfile describes it (there is no Docker
//! engine in CI): its state on a volume, production secrets required,
//! pinned bases, and a dependency layer that still matches the workspace.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_image_keeps_its_state_and_refuses_generated_secrets() {
    let text = dockerfile();
    let steps = instructions(&text);
    assert!(steps.iter().any(|s| s == "VOLUME /data"), "no VOLUME /data");
    let env: Vec<&String> = steps.iter().filter(|s| s.starts_with("ENV ")).collect();
    assert!(
        env.iter().any(|s| s.contains("ENVIRONMENT=production")),
        "the image must run in production mode"
    );
    assert!(
        env.iter()
            .any(|s| s.contains("DATABASE_URL=sqlite:///data/")),
        "the database must live on the volume"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("HEALTHCHECK") && s.contains("\"mcpgate\", \"health\"")),
        "the health check uses the binary (the image has no curl)"
    );
}

#[test]
fn base_images_are_pinned_to_releases() {
    let steps = instructions(&dockerfile());
    let images: Vec<&String> = steps
        .iter()
        .filter(|s| s.starts_with("ARG ") && s.contains("_IMAGE="))
        .collect();
    assert_eq!(images.len(), 2, "{images:?}");
    for arg in images {
        let image = arg.split('=').nth(1).unwrap();
        let tag = image.split(':').nth(1).unwrap_or("");
        // `1.95.0-bookworm`, `12.11-slim`: a release, not a moving `1` or
        // `latest`.
        let version = tag.split('-').next().unwrap();
        assert!(
            version.split('.').count() >= 2 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{image} is not pinned to a release"
        );
    }
    for from in steps.iter().filter(|s| s.starts_with("FROM ")) {
        assert!(from.contains("${"), "{from}: use the pinned ARG");
    }
}

/// The stub stage that caches dependencies, run as written but with
/// `cargo metadata` instead of the build: it must still describe a valid
/// workspace (every member's manifest copied, every declared target stubbed).
#[test]
fn the_dependency_layer_matches_the_workspace() {
    let steps = instructions(&dockerfile());
    let dir = tempfile::tempdir().unwrap();
    let stub = steps
        .iter()
        .position(|s| s.starts_with("RUN mkdir -p src"))
        .expect("the stub stage");
    for copy in steps[..stub].iter().filter(|s| s.starts_with("COPY ")) {
        let parts: Vec<&str> = copy.split_whitespace().skip(1).collect();
        let (sources, dest) = parts.split_at(parts.len() - 1);
        for src in sources {
            let to = if dest[0].ends_with('/') {
                dir.path().join(dest[0]).join(src)
            } else {
                dir.path().join(dest[0])
            };
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root().join(src), &to).unwrap();
        }
    }
    let members = ["proxy", "cache-zones"];
    for m in members {
        assert!(
            dir.path().join(m).join("Cargo.toml").exists(),
            "the dependency layer does not copy {m}/Cargo.toml"
        );
    }
    // Resolves the workspace against the lockfile (the host's packages are
    // all in the local registry cache).
    // Every target cargo will look for must be stubbed: the root's declared
    // paths and the members' src/lib.rs.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut targets: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .collect();
    targets.extend(members.iter().map(|m| format!("{m}/src/lib.rs")));
    let check = format!(
        "cargo tree --locked --offline --workspace -e normal --depth 0 --prefix none > members.txt \
         && for t in {}; do test -f \"$t\" || {{ echo \"no stub for $t\" >&2; exit 1; }}; done",
        targets.join(" ")
    );
    let script = steps[stub]
        .strip_prefix("RUN ")
        .unwrap()
        .replace("cargo build --release --locked --bin mcpgate", &check);
    assert!(
        script.contains("members.txt"),
        "the stub stage builds no more?"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members = std::fs::read_to_string(dir.path().join("members.txt")).unwrap();
    for crate_name in ["mcpgate ", "mcpgate-proxy ", "mcpgate-cache-zones "] {
        assert!(
            members.lines().any(|l| l.starts_with(crate_name)),
            "{members}"
        );
    }
    // The source stage copies what the real build reads.
    for path in [
        "build.rs",
        "migrations",
        "src",
        "proxy/src",
        "cache-zones/src",
        "tests/fixture",
    ] {
        assert!(
            steps[stub..]
                .iter()
                .any(|s| s.starts_with("COPY ") && s.split_whitespace().nth(1) == Some(path)),
            "the source stage does not copy {path}"
        );
        assert!(
            root().join(path).exists(),
            "{path} is gone: update the Dockerfile"
        );
    }
}
