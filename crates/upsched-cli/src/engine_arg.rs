//! `--engine jit|interp`: how tenant policies run outside the kernel (`call`, `sim`, `sweep`).

use clap::{Args, ValueEnum};
use upsched_policy::ExecMode;

#[derive(Args, Clone, Copy)]
pub struct EngineArg {
    /// Engine that runs tenant policies [default: jit on x86-64, interp elsewhere].
    #[arg(long, value_enum)]
    engine: Option<Engine>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// Native code compiled when the policy is loaded.
    Jit,
    /// The eBPF interpreter.
    Interp,
}

impl EngineArg {
    pub fn mode(self) -> ExecMode {
        match self.engine {
            None => ExecMode::default(),
            Some(Engine::Jit) => ExecMode::Jit,
            Some(Engine::Interp) => ExecMode::Interpreter,
        }
    }
}
