#![forbid(unsafe_code)]

use std::io::IsTerminal;

use kube_reloader::cli::{Command, LogFormat, Output};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let (args, notes) = kube_reloader::cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
    for note in &notes {
        tracing::info!("{note}");
    }

    if let Some(Command::Explain {
        target,
        all_namespaces,
        namespace,
        output,
        ..
    }) = &args.command
    {
        let (namespace, json) = (namespace.as_deref(), *output == Output::Json);
        let config = args.explain_config();
        // The command line holds a target, or --all instead.
        let explained = match target {
            Some(target) => {
                kube_reloader::app::explain::run(target, namespace, json, &config).await
            }
            None => {
                kube_reloader::app::explain::run_all(namespace, *all_namespaces, json, &config)
                    .await
            }
        };
        match explained {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("kube-reloader explain: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let run = match args.config() {
        Ok(config) => kube_reloader::app::controller::run(config).await,
        Err(e) => Err(e),
    };
    if let Err(e) = run {
        tracing::error!("{e}");
        eprintln!("kube-reloader: {e}");
        std::process::exit(1);
    }
}
