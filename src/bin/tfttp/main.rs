//! The `tfttp` binary: parse the command line, run one command, exit with its code
//! (`exit::Exit`).

mod app;
mod cli;
mod demo;
mod exit;
mod ifaddrs;
mod procs;
mod progress;
mod units;
mod url;

use cli::Command;
use exit::{Exit, Fail};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match cli::parse(&args) {
        Err(e) => Err(Fail::new(Exit::Usage, e)),
        Ok(Command::Help(text)) => {
            println!("{text}");
            Ok(())
        }
        Ok(Command::Version) => {
            println!(
                "tfttp {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                tfttp::wire::VERSION
            );
            Ok(())
        }
        Ok(cmd) => {
            // Nodes finish cleanly on SIGINT/SIGTERM/SIGHUP/SIGQUIT (stats written, a sized
            // `.part` kept for resuming); a simulation has nothing to clean up, so Ctrl-C
            // ends it at once.
            if !matches!(cmd, Command::Sim(_)) {
                tfttp::net::install_signal_handlers();
            }
            match &cmd {
                Command::Serve(a) => app::serve(a),
                Command::Get(a) => app::get(a),
                Command::Demo(a) => demo::run(a).map_err(|e| Fail::new(Exit::Other, e)),
                Command::Sim(a) => app::sim(a),
                Command::Help(_) | Command::Version => Ok(()),
            }
        }
    };
    let code = match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("tfttp: {f}");
            f.exit.code()
        }
    };
    std::process::exit(code);
}
