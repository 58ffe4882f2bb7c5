use cerflow::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// cerflow: OTLP spans in, per-journey SLIs, SLOs and customer-experience scores out.
///
/// With no --config, cerflow runs its embedded default configuration: OTLP on
/// 127.0.0.1:4317 (gRPC) and 127.0.0.1:4318 (HTTP), Prometheus on 127.0.0.1:9464/metrics,
/// and one journey derived per entry-point span.
#[derive(Parser)]
#[command(name = "cerflow", version, about, long_about)]
struct Cli {
    /// YAML config file; `${env:VAR}` and `${env:VAR:-default}` expand in it.
    #[arg(short, long, global = true, env = "CERFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `cerflow=debug`); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run cerflow (the default when no command is given).
    Run,
    /// Check a config file and print every problem with its line and column; exit 1 if any.
    Validate,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Release gate for CI/CD: exit 0 when the journey's score passes, 1 when it fails,
    /// 2 when it cannot decide (cerflow unreachable, no data).
    Gate(cerflow::gate::Args),
    /// Send realistic OTLP span load to an OTLP endpoint (cerflow, rotel, a Collector) and
    /// report what it accepted; exit 1 when more requests failed than --max-errors.
    Loadgen(cerflow::loadgen::Args),
    /// Print the configured journeys' SLOs for other tools (--config, else the default).
    #[command(subcommand)]
    Export(Export),
}

#[derive(Subcommand)]
enum Export {
    /// Prometheus recording and burn-rate alerting rules reproducing cerflow's alert table.
    PrometheusRules,
    /// The journeys' SLOs as OpenSLO v1 documents, with a composite SLO for the overall score.
    Openslo,
}

fn init_logs(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load_file(p).map_err(|e| e.to_string()),
        None => Ok(Config::embedded_default()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Gate(args) => ExitCode::from(cerflow::gate::run(&args)),
        Command::Loadgen(args) => ExitCode::from(cerflow::loadgen::run(args)),
        Command::Export(what) => match load(&cli.config) {
            Ok(cfg) => {
                let text = match what {
                    Export::PrometheusRules => Ok(cerflow::rules::render(&cfg)),
                    Export::Openslo => cerflow::openslo::render(&cfg),
                };
                match text {
                    Ok(t) => {
                        print!("{t}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(1)
            }
        },
        Command::DefaultConfig => {
            print!("{}", cerflow::config::DEFAULT_CONFIG_YAML);
            ExitCode::SUCCESS
        }
        Command::Validate => {
            let Some(path) = &cli.config else {
                eprintln!("validate needs --config FILE");
                return ExitCode::from(2);
            };
            match Config::load_file(path) {
                Ok(cfg) => {
                    println!(
                        "{}: valid ({} journeys, {} windows, version \"{}\")",
                        path.display(),
                        cfg.journeys.len(),
                        cfg.windows.sizes.len(),
                        cfg.version
                    );
                    println!("  users.keys: {}", cfg.users);
                    for j in &cfg.journeys {
                        match &j.value {
                            Some(v) => println!("  journey {}: value from {v}", j.name),
                            None => println!("  journey {}: no value", j.name),
                        }
                        let only = j.matcher == cerflow::predicate::Cond::Any(Vec::new());
                        for line in cerflow::metric_requests::config::describe(
                            &j.name,
                            j.latency_threshold,
                            only,
                            &j.metrics,
                        ) {
                            println!("{line}");
                        }
                    }
                    println!("  deployments: {}", cfg.deployments);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run => {
            init_logs(&cli.log_level, &cli.log_format);
            let cfg = match load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(1);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(cerflow::app::run(cfg, cli.config.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cerflow cannot start.");
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
