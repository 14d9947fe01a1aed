//! `confidant`: the clinic's command line. Thin by design: it parses
//! arguments, reads the configuration and calls the library crates.
#![forbid(unsafe_code)]

mod config;
mod demo;
mod instance;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Confidant: clinical records for psychotherapy practices, encrypted at rest.
#[derive(Debug, Parser)]
#[command(name = "confidant", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a throwaway instance with synthetic patients, and serve it.
    ///
    /// Everything lives in a temporary folder that is deleted when you press
    /// Ctrl-C. Prints the URL and an API token. Never use it for real patients.
    Demo {
        /// Address to listen on (a free port is chosen if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Create a new instance in DIR: configuration, database and keys.
    ///
    /// The key-encryption key is written to a key file OUTSIDE DIR (mode 0600),
    /// by default ~/.config/confidant/keys/<instance>.kek. Without that file the
    /// data cannot be read: back it up, apart from the data. An existing key
    /// file is never overwritten.
    Init {
        /// The instance directory (created if missing; must not hold an instance).
        #[arg(long)]
        dir: PathBuf,
        /// Where to create the key file (must be outside DIR and not exist yet).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Use PostgreSQL instead of the embedded SQLite (postgres://user@host/db).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Serve the instance in DIR over HTTP, as configured in DIR/confidant.toml.
    ///
    /// Refuses to start, changing nothing, if the key file is missing or is not
    /// this instance's key. Stops cleanly on Ctrl-C or SIGTERM.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on, overriding the configuration (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// API tokens for FHIR clients (until staff accounts arrive).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it once. Only its hash is stored: copy it now.
    Create {
        #[arg(long)]
        dir: PathBuf,
        /// A note on what the token is for (e.g. the integrating system's name).
        #[arg(long, default_value = "api")]
        label: String,
    },
    /// List tokens (ids, labels, dates; never the tokens themselves).
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Revoke a token by its id (from `token list`); it stops working at once.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CONFIDANT_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Panics print where, never what: a payload could carry data (DESIGN.md §11.1).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "confidant: internal error at {at}; please report it (no record content was printed)"
        );
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Demo { listen } => demo::run(&listen).await,
            Command::Init {
                dir,
                key_file,
                database_url,
            } => instance::init(&dir, key_file, database_url)
                .await
                .map(|_| ()),
            Command::Serve { dir, listen } => instance::serve(&dir, listen).await,
            Command::Token { action } => match action {
                TokenAction::Create { dir, label } => instance::token_create(&dir, &label).await,
                TokenAction::List { dir } => instance::token_list(&dir).await,
                TokenAction::Revoke { dir, id } => instance::token_revoke(&dir, &id).await,
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
