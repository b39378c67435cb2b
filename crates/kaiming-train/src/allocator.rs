//! The allocator setting that the training processes run with.
//!
//! The `train` binary and the throughput bench allocate through mimalloc (their
//! `#[global_allocator]`; a library cannot choose its users' allocator, so this crate only
//! configures it). mimalloc hands freed pages back to the OS one second after they are freed
//! (its `purge_delay`). A training step frees its activations during the backward pass and
//! allocates them again in the next forward pass, so pages given back are faulted in and zeroed
//! by the kernel again, step after step: 6 % of a ResNet-56 step's samples were in the kernel's
//! `clear_page_erms` in steady state, and keeping the pages made the forward pass 8 % and the
//! step 2–3 % faster (`benches/README.md`). The resident size stays at the step's peak, which
//! every step reaches anyway.

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc's `mi_option_purge_delay`: its position in `mi_option_t` (the binding names only
/// some options). The test below checks it against the option's documented default.
const PURGE_DELAY: mi_option_t = 15;

/// The environment variable through which a user sets the purge delay themselves.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc keep freed pages for reuse (`purge_delay = -1`), unless the user set
/// `MIMALLOC_PURGE_DELAY`, whose value then stands. Call once, at the start of `main`.
pub fn keep_freed_pages() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        // SAFETY: mimalloc's options are plain integers it reads on each purge decision;
        // `PURGE_DELAY` is within `mi_option_t` (checked by the test below).
        unsafe { mi_option_set(PURGE_DELAY, -1) }
    }
}

/// mimalloc's purge delay in milliseconds now (-1: never purge).
pub fn purge_delay() -> c_long {
    // SAFETY: reading an option in range, as above.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PURGE_DELAY` is the purge delay: unset, the option has mimalloc's default of 1000 ms
    /// (no other option defaults to 1000), set by the environment it has that value; and
    /// `keep_freed_pages` sets it to -1 only where the user did not choose.
    #[test]
    fn keep_freed_pages_sets_the_purge_delay_unless_the_user_did() {
        let user: Option<c_long> = std::env::var(PURGE_DELAY_VARIABLE)
            .ok()
            .and_then(|value| value.trim().parse().ok());
        assert_eq!(purge_delay(), user.unwrap_or(1000));
        keep_freed_pages();
        assert_eq!(purge_delay(), user.unwrap_or(-1));
    }
}
