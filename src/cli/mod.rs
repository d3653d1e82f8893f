//! The `oada-gateway` command line.

mod check;
mod demo;
mod keygen;
mod keys;
mod token;

use crate::config::Config;
use crate::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "oada-gateway",
    version,
    about = "A Pingora reverse proxy that hosts an OADA OAuth 2.0 authorization server and checks bearer tokens and OADA scopes on every request.",
    after_help = "Without a command, runs the gateway. Logs go to stderr; RUST_LOG filters them (e.g. RUST_LOG=info,oada_gateway::access=off)."
)]
pub struct Cli {
    /// The gateway configuration file.
    #[arg(long, short, global = true, default_value = "gateway.yaml", env = "OADA_GATEWAY_CONFIG")]
    pub config: PathBuf,

    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Graceful upgrade: take the listening sockets over from the running gateway (send it
    /// SIGQUIT once this one waits) instead of binding them; see server.upgrade_socket.
    #[arg(long)]
    pub upgrade: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and print a summary, or every error (exit code 1).
    Check,
    /// Generate a signing key: writes a PKCS#8 PEM private key, prints the public JWK.
    Keygen {
        /// RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519).
        #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
        alg: String,
        /// Key id, as referenced by `signing_keys[].kid` or a client's JWK.
        #[arg(long)]
        kid: String,
        /// Where to write the private key (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// The signing-key lifecycle, written into the config file (then reload every replica).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Hash a secret read from stdin: for `clients[].client_secret_hash`, or with --password for
    /// a person's `password_hash` in `authorization.users_file`.
    HashSecret {
        /// A person's password (at least 8 characters) rather than a client secret (at least 16).
        #[arg(long)]
        password: bool,
    },
    /// Run the demo: the gateway with this config in front of the sample API, walking a partner
    /// through the client grant and a farmer's app through the authorization code flow.
    Demo {
        /// Keep the gateway, the sample API and a demo app running afterwards, to try the flow in
        /// a browser.
        #[arg(long)]
        serve: bool,
    },
    /// As a partner: register the registration document and print an access token.
    Token {
        /// The gateway's issuer URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        issuer: String,
        /// The partner's PKCS#8 PEM private key.
        #[arg(long)]
        key: PathBuf,
        /// The partner's client registration document (JSON with jwks).
        #[arg(long)]
        registration: PathBuf,
        /// Space-separated scopes to ask for (default: everything the client may have).
        #[arg(long)]
        scope: Option<String>,
    },
    /// Exit 0 when the admin endpoint answers 200 (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
    },
    /// Serve the sample weather-station API (the demo's upstream).
    SampleApi {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a key and add it to signing_keys as `next`: published at /jwks, not signing yet.
    Add {
        /// Key id of the new key.
        #[arg(long)]
        kid: String,
        /// RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519).
        #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"], default_value = "ES256")]
        alg: String,
        /// Where to write the private key, relative to the config file's folder
        /// (default keys/KID.pem; created with mode 0600, never overwritten).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make the next key active (it signs) and the active key retired (it verifies, and /jwks
    /// publishes it until the tokens it signed have expired).
    Rotate {
        /// Which next key, when there are several.
        #[arg(long)]
        kid: Option<String>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            logging::init(cli.log_format);
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(errors) => {
                    for e in errors.iter() {
                        tracing::error!("{e}");
                    }
                    eprintln!("{errors}\nrefusing to start: fix the configuration (oada-gateway check --config {})", cli.config.display());
                    return 1;
                }
            };
            match crate::server::run(config, crate::server::StartMode { upgrade: cli.upgrade }) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("oada-gateway: {e}");
                    1
                }
            }
        }
        Command::Check => check::run(&cli.config),
        Command::Keygen { alg, kid, out } => keygen::run(&alg, &kid, &out),
        Command::Keys { command } => match command {
            KeysCommand::Add { kid, alg, out } => keys::add(&cli.config, &kid, &alg, out.as_deref()),
            KeysCommand::Rotate { kid } => keys::rotate(&cli.config, kid.as_deref(), std::time::SystemTime::now()),
        },
        Command::HashSecret { password } => keygen::hash_secret(password),
        Command::Demo { serve } => demo::run(&cli.config, serve),
        Command::Token {
            issuer,
            key,
            registration,
            scope,
        } => token::run(&issuer, &key, &registration, scope.as_deref()),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::SampleApi { listen } => {
            logging::init(cli.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(crate::sample_api::run(listen)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("sample-api: cannot listen on {listen}: {e}");
                    1
                }
            }
        }
    }
}

fn healthcheck(url: &str) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let status = runtime.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .ok()?
            .get(url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    });
    match status {
        Some(200) => 0,
        Some(other) => {
            eprintln!("healthcheck: {url} answered {other}");
            1
        }
        None => {
            eprintln!("healthcheck: {url} did not answer");
            1
        }
    }
}
