//! Output buffers that are written without being cleared first.
//!
//! `vec![0.0; n]` for every output costs a pass over memory that the kernel then overwrites,
//! and fresh pages from the OS besides. Here outputs start as `MaybeUninit` and become `f32`
//! only once every element has been written.
//!
//! A kernel that missed an element would go unnoticed: fresh pages read as zero, and half of a
//! ReLU's outputs are zero anyway. With write checks on ([`set_write_checks`], or
//! `KAIMING_CHECK_WRITES=1`, which the CI sets for the whole suite) every buffer starts filled
//! with a tagged NaN that no arithmetic produces, and turning it into floats panics if any
//! survived.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

/// The variable that switches write checks on for a process.
pub const CHECK_WRITES_VARIABLE: &str = "KAIMING_CHECK_WRITES";

/// A quiet NaN with a payload (`0x7fc0_dead`) that arithmetic never makes: NaNs produced by
/// operations carry the canonical payload or their inputs'.
const UNWRITTEN: u32 = 0x7fc0_dead;

/// Write checks: 0 not yet decided, 1 off, 2 on.
static CHECKS: AtomicU8 = AtomicU8::new(0);

/// Switches the write checks on or off for the process, over `KAIMING_CHECK_WRITES`. They cost
/// two passes over every output, so they are for tests.
pub fn set_write_checks(on: bool) {
    CHECKS.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// What `KAIMING_CHECK_WRITES` asks for: on for `1`, `true`, `yes` or `on`; off when unset or
/// empty, or for `0`, `false`, `no` or `off` (any case); anything else is an error naming the
/// variable, so a misspelt switch cannot leave the checks off unnoticed.
pub(crate) fn write_checks_from_environment() -> Result<bool, String> {
    let value = std::env::var(CHECK_WRITES_VARIABLE).unwrap_or_default();
    parse_switch(&value).ok_or_else(|| {
        format!("{CHECK_WRITES_VARIABLE}={value:?}: expected 1, true, yes, on or 0, false, no, off")
    })
}

fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Whether write checks are on; the environment decides on first use.
fn checking() -> bool {
    match CHECKS.load(Ordering::Relaxed) {
        0 => {
            let on = write_checks_from_environment().unwrap_or_else(|error| panic!("{error}"));
            set_write_checks(on);
            on
        }
        state => state == 2,
    }
}

/// `len` floats of unspecified contents (the tagged NaN where checks are on).
pub(crate) fn buffer(len: usize) -> Vec<MaybeUninit<f32>> {
    if checking() {
        return vec![MaybeUninit::new(f32::from_bits(UNWRITTEN)); len];
    }
    let mut values = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation, and the capacity is `len`.
    unsafe { values.set_len(len) };
    values
}

/// The buffer as floats; where checks are on, a panic if any element still holds the tag.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn assume_init(values: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut values = std::mem::ManuallyDrop::new(values);
    let (pointer, len, capacity) = (values.as_mut_ptr(), values.len(), values.capacity());
    // SAFETY: same allocation, length and capacity; `MaybeUninit<f32>` has `f32`'s layout, and
    // the caller vouches that every element is initialised.
    let values = unsafe { Vec::from_raw_parts(pointer.cast::<f32>(), len, capacity) };
    if checking() {
        let unwritten = values.iter().filter(|v| v.to_bits() == UNWRITTEN).count();
        assert_eq!(
            unwritten, 0,
            "a kernel left {unwritten} of {len} outputs unwritten"
        );
    }
    values
}

/// Written values as the floats they now hold.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn written(values: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller vouches that every element
    // is initialised.
    unsafe { &*(values as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// [`written`], mutably.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn written_mut(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: as for `written`.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Sets `target` to zeros and returns it as the floats it now holds.
pub(crate) fn zeroed(target: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    target.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was just written.
    unsafe { written_mut(target) }
}

/// Checks of this module's internals against their definitions, compiled into the library and
/// run by the crate's test suite through [`crate::self_checks`].
pub(crate) mod checks {
    use super::*;

    fn write(target: &mut [MaybeUninit<f32>], source: &[f32]) {
        for (target, source) in target.iter_mut().zip(source) {
            target.write(*source);
        }
    }

    pub fn a_missed_write_is_caught_and_a_full_one_passes() {
        set_write_checks(true);
        let mut full = buffer(5);
        write(&mut full, &[1.0, f32::NAN, 0.0, -0.0, 2.0]);
        // SAFETY: all five written.
        let full = unsafe { assume_init(full) };
        assert_eq!(full.len(), 5);

        let mut partial = buffer(5);
        write(&mut partial[..4], &[1.0, 2.0, 3.0, 4.0]);
        let caught = std::panic::catch_unwind(|| {
            // SAFETY: not all written — which is what the check must catch; the tag is a
            // valid float, so reading it is defined here.
            unsafe { assume_init(partial) }
        });
        let message = caught.expect_err("the unwritten element passed");
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("left 1 of 5 outputs unwritten"),
            "{message}"
        );
    }

    pub fn the_switch_reads_the_usual_spellings_and_refuses_others() {
        for on in ["1", "true", "TRUE", "yes", "on", " On "] {
            assert_eq!(parse_switch(on), Some(true), "{on:?}");
        }
        for off in ["", "0", "false", "no", "off", "OFF"] {
            assert_eq!(parse_switch(off), Some(false), "{off:?}");
        }
        for bad in ["2", "maybe", "enabled"] {
            assert_eq!(parse_switch(bad), None, "{bad:?}");
        }
    }
}
