//! `livestream bench`: loads the configuration the cases start from and hands
//! over to [`crate::bench`], which measures and prints. On the main thread; a
//! Ctrl-C ends the bench after the case under way.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::{load, Failure};
use crate::bench::BenchArgs;
use crate::config::Overrides;

pub(super) fn run(
    args: &BenchArgs,
    config: Option<&Path>,
    sets: &[String],
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let cfg = load(config, sets, &Overrides::default())?;
    crate::bench::run(&cfg, args, stop).map_err(Failure::failed)
}
