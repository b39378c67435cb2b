//! Turning a library's panic into an error without printing it. The panic hook is process-wide:
//! swapping it for a silent one, even briefly, also silences the panics of every other thread
//! meanwhile (a failing test's own message among them), and two threads swapping at once can
//! leave the silent hook installed for good. So one wrapping hook is installed, once, and it is
//! quiet only on a thread that is inside [`catch_quietly`].

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work`, returning its panic (unprinted) as an error; panics elsewhere print as before.
pub fn catch_quietly<R>(work: impl FnOnce() -> R) -> std::thread::Result<R> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|quiet| quiet.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(work));
    QUIET.with(|quiet| quiet.set(was));
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::catch_quietly;

    /// The panic the hook reports, counted: quiet inside `catch_quietly`, heard on another
    /// thread meanwhile (the race that hid a failing test's message), heard again afterwards.
    #[test]
    fn only_the_quiet_thread_is_silenced() {
        let heard = Arc::new(AtomicUsize::new(0));
        let counter = heard.clone();
        std::panic::set_hook(Box::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let outcome = catch_quietly(|| {
            let elsewhere = std::thread::spawn(|| panic!("another thread"));
            assert!(elsewhere.join().is_err());
            panic!("quiet")
        });
        assert!(outcome.is_err());
        assert_eq!(
            heard.load(Ordering::SeqCst),
            1,
            "only the other thread's panic is heard"
        );
        assert!(std::panic::catch_unwind(|| panic!("loud again")).is_err());
        assert_eq!(heard.load(Ordering::SeqCst), 2);
        let _ = std::panic::take_hook();
    }
}
