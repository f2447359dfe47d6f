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
    Serve(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Make tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed JWT.
    Create {
        /// The user (the `sub` claim).
        #[arg(long, short = 'u')]
        username: String,
        /// Minutes until expiry; 0 = never (needs REQUIRE_TOKEN_EXPIRATION=false to be accepted).
        #[arg(long, short = 'e', default_value_t = 10080)]
        exp: u64,
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
    Config::load(arg.config.as_deref()).map_err(|e| format!("configuration error: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(c) => serve(c),
        Command::Migrate(c) => migrate(c),
        Command::Token(TokenCommand::Create {
            username,
            exp,
            secret,
            teams,
            admin,
            config,
        }) => token_create(config, username, exp, secret, teams, admin),
        Command::Config(ConfigCommand::Check(c)) => load(&c).map(|cfg| {
            print!("{}", cfg.masked_yaml());
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
    exp: u64,
    secret: Option<String>,
    teams: Option<Vec<String>>,
    admin: bool,
) -> Result<(), String> {
    let config = load(&arg)?;
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

fn serve(arg: ConfigArg) -> Result<(), String> {
    let config = load(&arg)?;
    mcpgate::observability::init_logging(&config);
    runtime()?.block_on(async {
        let mut running = mcpgate::server::start(config)
            .await
            .map_err(|e| e.to_string())?;
        let cfg = &running.state.config;
        eprintln!(
            "mcpgate {} listening on http://{} ({} database)",
            env!("CARGO_PKG_VERSION"),
            running.addr,
            running.state.registry.store().backend().as_str()
        );
        if running.secrets.newly_generated {
            eprintln!(
                "Generated secrets were stored in {}/.mcpgate-secrets.json (mode 0600).\n\
                 Make a token with:  mcpgate token create --username {} --admin",
                cfg.state_dir().display(),
                cfg.platform_admin_email
            );
        }
        tokio::select! {
            r = running.wait() => return r.map_err(|e| e.to_string()),
            _ = shutdown_signal() => {}
        }
        eprintln!("mcpgate: shutting down");
        running.stop().await.map_err(|e| e.to_string())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
