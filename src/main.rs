//! The `fanlog` command line.

mod admin;
mod bench;
mod commands;
mod config;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fanlog",
    version,
    about = "A small pub/sub broker with a durable log per topic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Publish each MESSAGE (or each line of stdin) and print its seq.
    Pub(commands::PubArgs),
    /// Print `SEQ<TAB>PAYLOAD` for each message of a topic.
    Sub(commands::SubArgs),
    /// List topics: name, first seq, next seq, bytes.
    Topics(commands::TopicsArgs),
    /// The load tool: publish | consume | e2e | fanout | idle.
    Bench(bench::BenchArgs),
    /// Administer topics, consumer groups and hooks (over HTTP).
    Admin(admin::AdminArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (what `GET /openapi.json`
    /// serves), to generate clients without a running broker.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Bench(_)) {
        raise_fd_limit();
    }
    // `serve` starts logging itself, as its configuration says.
    if !matches!(cli.command, Command::Serve(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanlog: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Pub(args) => commands::publish(args).await,
            Command::Sub(args) => commands::subscribe(args).await,
            Command::Topics(args) => commands::topics(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Openapi => {
                let doc = fanlog::server::edge::openapi::document();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
        }
    });
    // Do not wait for detached tasks (a client's driver) on the way out.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("fanlog: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Raises this process's open-file limit to its hard limit, for a broker or a load
/// run with thousands of connections.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!("cannot raise the open-file limit: {e}");
        }
    }
}
