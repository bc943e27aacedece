//! The `tfttp` binary: parse the command line, run one command, exit with its code.

mod app;
mod cli;
mod demo;
mod procs;
mod units;

use cli::{Command, EXIT_FAILURE, EXIT_USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args) {
        Err(e) => {
            eprintln!("tfttp: {e}");
            EXIT_USAGE
        }
        Ok(Command::Help(text)) => {
            println!("{text}");
            0
        }
        Ok(Command::Version) => {
            println!(
                "tfttp {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                tfttp::wire::VERSION
            );
            0
        }
        Ok(cmd) => {
            // Nodes finish cleanly on SIGINT/SIGTERM (stats written, `.part` removed); a
            // simulation has nothing to clean up, so Ctrl-C ends it at once.
            if !matches!(cmd, Command::Sim(_)) {
                tfttp::net::install_signal_handlers();
            }
            let failed = |e| (EXIT_FAILURE, e);
            let result = match &cmd {
                Command::Serve(a) => app::serve(a).map_err(failed),
                Command::Get(a) => app::get(a).map_err(failed),
                Command::Demo(a) => demo::run(a).map_err(failed),
                Command::Sim(a) => app::sim(a),
                Command::Help(_) | Command::Version => Ok(()),
            };
            match result {
                Ok(()) => 0,
                Err((code, e)) => {
                    eprintln!("tfttp: {e}");
                    code
                }
            }
        }
    };
    std::process::exit(code);
}
