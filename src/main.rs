//! The `fanlog` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fanlog::{Broker, BrokerConfig, Durability, TopicConfig};

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
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Data directory.
    #[arg(long, default_value = "./fanlog-data")]
    data: PathBuf,
    /// When a publish is acknowledged: always | interval:MS | never.
    #[arg(long, default_value = "interval:100")]
    fsync: Durability,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanlog: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanlog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = BrokerConfig {
        topic: TopicConfig {
            durability: args.fsync,
            ..TopicConfig::default()
        },
    };
    let broker = Broker::open(&args.data, config)?;
    let topics = broker.topics();
    tracing::info!(
        data = %args.data.display(),
        topics = topics.len(),
        fsync = %args.fsync,
        "broker open (embedded log only: network listeners are not built yet)"
    );
    shutdown_signal().await?;
    tracing::info!("shutting down");
    broker.close()?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
