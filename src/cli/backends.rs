//! `livestream backends`: every backend of this build, whether it works on
//! this machine, and the ones cargo features left out with how to get them
//! back. The table is the registry's ([`registry::report`]); on the main thread.

use crate::registry;

pub(super) fn run() {
    print!("{}", registry::report());
}
