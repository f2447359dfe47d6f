//! The `mcpgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use mcpgate::auth::{Signer, resolve_secrets};

// glibc malloc serialises threads on its arena locks under load; mimalloc
// keeps allocation thread-local.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mcpgate::config::Config;
use mcpgate_proxy::Stop;

#[derive(Parser)]
#[command(name = "mcpgate", version, about = "A fast, trustworthy MCP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// YAML configuration file; environment variables override it.
    #[arg(long, short = 'c', env = "MCPGATE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Make tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask a running gateway's /health; exit 0 when it is healthy.
    Health(HealthArgs),
}

#[derive(Args, Clone)]
struct HealthArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The gateway's base URL; defaults to the configured HOST and PORT.
    #[arg(long)]
    url: Option<String>,
    /// Keep asking for up to this many seconds until it is healthy (for
    /// scripts that start it in the background).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait: u64,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Graceful binary upgrade: take the edge's listening socket over from
    /// the running mcpgate (then send it SIGQUIT).
    #[arg(long, short = 'u')]
    upgrade: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed JWT.
    Create {
        /// The user (the `sub` claim).
        #[arg(long, short = 'u')]
        username: String,
        /// Minutes until expiry (default: TOKEN_EXPIRY); 0 = never (needs REQUIRE_TOKEN_EXPIRATION=false to be accepted).
        #[arg(long, short = 'e')]
        exp: Option<u64>,
        /// Signing secret; defaults to the configured or generated one.
        #[arg(long, short = 's')]
        secret: Option<String>,
        /// Restrict the token to these team ids (comma separated).
        #[arg(long, value_delimiter = ',')]
        teams: Option<Vec<String>>,
        /// Mark the token's user as platform admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets masked.
    Check(ConfigArg),
}

fn load(arg: &ConfigArg) -> Result<Config, String> {
    Config::load(arg.config.as_deref()).map_err(|e| describe_config_error(&e))
}

/// Every problem of a configuration, one per line.
fn describe_config_error(e: &mcpgate::config::ConfigError) -> String {
    let problems = e.problems();
    if problems.len() == 1 {
        return format!("configuration error: {e}");
    }
    let mut out = format!("configuration has {} problems:", problems.len());
    for p in problems {
        out.push_str(&format!("\n  - {p}"));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Migrate(c) => migrate(c),
        Command::Token(TokenCommand::Create {
            username,
            exp,
            secret,
            teams,
            admin,
            config,
        }) => token_create(config, username, exp, secret, teams, admin),
        Command::Health(a) => health(a),
        Command::Config(ConfigCommand::Check(c)) => load(&c).map(|cfg| {
            print!("{}", cfg.masked_yaml());
            let lines = Config::survey_env();
            if !lines.is_empty() {
                eprintln!("environment variables:");
                for line in lines {
                    eprintln!("  {line}");
                }
            }
            eprintln!("configuration is valid");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn token_create(
    arg: ConfigArg,
    username: String,
    exp: Option<u64>,
    secret: Option<String>,
    teams: Option<Vec<String>>,
    admin: bool,
) -> Result<(), String> {
    let config = load(&arg)?;
    let exp = exp.unwrap_or(config.token_expiry);
    let secret = match secret {
        Some(s) => s,
        None => {
            resolve_secrets(&config)
                .map_err(|e| e.to_string())?
                .jwt_secret
        }
    };
    let signer = Signer::new(&config, &secret).map_err(|e| e.to_string())?;
    let claims = signer.claims(&username, exp, teams, admin);
    println!("{}", signer.sign(&claims).map_err(|e| e.to_string())?);
    Ok(())
}

fn health(args: HealthArgs) -> Result<(), String> {
    let base = match args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let config = load(&args.config)?;
            // A wildcard bind address is reached on loopback.
            let host = match config.host.as_str() {
                "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
                h if h.contains(':') => format!("[{h}]"),
                h => h.to_owned(),
            };
            format!("http://{host}:{}", config.port)
        }
    };
    let url = format!("{base}/health");
    runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(args.wait);
        loop {
            let last = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    println!("{}", r.text().await.unwrap_or_default());
                    return Ok(());
                }
                Ok(r) => format!(
                    "{url} answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) => format!("{url} cannot be reached: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

fn migrate(arg: ConfigArg) -> Result<(), String> {
    let config = load(&arg)?;
    runtime()?.block_on(async {
        let store = mcpgate::server::open_store(&config)
            .await
            .map_err(|e| e.to_string())?;
        store.close().await;
        eprintln!("migrations applied ({})", store.backend().as_str());
        Ok(())
    })
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = load(&args.config)?;
    mcpgate::observability::init_logging(&config);
    report_foreign_variables();
    runtime()?.block_on(async {
        let mut running = mcpgate::server::start_with(config, args.upgrade)
            .await
            .map_err(|e| e.to_string())?;
        let cfg = running.state.config.clone();
        if let Some(tree) = &running.secrets.in_work_tree {
            eprintln!(
                "mcpgate: warning: the generated secrets file {}/.mcpgate-secrets.json is inside the git work tree {}: \
                 make sure it is ignored, or set JWT_SECRET_KEY and AUTH_ENCRYPTION_SECRET, or put the database \
                 (DATABASE_URL=sqlite:///path/outside/mcpgate.db) outside the work tree",
                cfg.get().state_dir().display(),
                tree.display()
            );
        }
        eprintln!(
            "mcpgate {} listening on http://{} ({} database)",
            env!("CARGO_PKG_VERSION"),
            running.addr,
            running.state.registry.store().backend().as_str()
        );
        if let Some(edge) = running.edge_addr {
            eprintln!("mcpgate edge listening on http://{edge}");
        }
        if let Some(m) = running.metrics_addr {
            eprintln!("mcpgate metrics (no auth) listening on http://{m}/metrics");
        }
        if running.secrets.newly_generated {
            eprintln!(
                "Generated secrets were stored in {}/.mcpgate-secrets.json (mode 0600).\n\
                 Make a token with:  mcpgate token create --username {} --admin",
                cfg.get().state_dir().display(),
                cfg.get().platform_admin_email
            );
        }
        let path = args.config.config.clone();
        let mut reload = reload_trigger(path.clone());
        let how = loop {
            tokio::select! {
                r = running.wait() => return r.map_err(|e| e.to_string()),
                how = shutdown_signal() => break how,
                Some(()) = reload.recv() => reload_config(&running, path.as_deref()),
            }
        };
        eprintln!(
            "mcpgate: {}",
            if how == Stop::Upgrade {
                "handing over to the new process"
            } else {
                "shutting down"
            }
        );
        running.stop_with(how).await.map_err(|e| e.to_string())
    })
}

/// Says once, at start, which of the reference's variables that are set
/// change nothing here, so that none is dropped silently.
fn report_foreign_variables() {
    use mcpgate::config::standing::Standing;
    for line in Config::survey_env() {
        match line.standing {
            Standing::Honoured => {}
            Standing::ReadAs(_) => tracing::info!("{line}"),
            Standing::NoEffect(_) | Standing::NotTheGateways(_) => tracing::warn!("{line}"),
        }
    }
}

/// Fires on SIGHUP and when the config file changes (checked every 2 s).
fn reload_trigger(path: Option<PathBuf>) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    if let Some(path) = path {
        tokio::spawn(async move {
            let stamp = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let mut last = stamp(&path);
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let now = stamp(&path);
                if now != last {
                    last = now;
                    if tx.send(()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    rx
}

/// Applies a changed configuration's live values; a bad file keeps the old
/// configuration.
fn reload_config(running: &mcpgate::server::Running, path: Option<&std::path::Path>) {
    match Config::load(path) {
        Ok(new) => {
            let report = running.reload(&new);
            tracing::warn!(applied = ?report.applied, needs_restart = ?report.needs_restart, "configuration reloaded");
            eprintln!(
                "mcpgate: configuration reloaded; applied: {}",
                if report.applied.is_empty() {
                    "nothing changed".to_owned()
                } else {
                    report.applied.join(", ")
                }
            );
            if !report.needs_restart.is_empty() {
                eprintln!(
                    "mcpgate: changed settings that apply only after a restart or a graceful upgrade (serve --upgrade, then SIGQUIT): {}",
                    report.needs_restart.join(", ")
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload rejected; keeping the running configuration");
            eprintln!(
                "mcpgate: configuration reload rejected, keeping the old one: {}",
                describe_config_error(&e)
            );
        }
    }
}

/// SIGTERM or Ctrl-C stop; SIGQUIT hands the edge's socket to a new process.
async fn shutdown_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Stop::Terminate,
            _ = term.recv() => Stop::Terminate,
            _ = quit.recv() => Stop::Upgrade,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Terminate
    }
}
