//! The kernels' internals against their definitions: the checks live in the library
//! (`kaiming_kernels::self_checks`, which says why); each runs here as a test.

use kaiming_kernels::self_checks;

#[test]
fn forward_kernels_match_the_definition() {
    self_checks::forward_kernels_match_the_definition();
}

#[test]
fn input_gradient_kernels_match_the_definition() {
    self_checks::input_gradient_kernels_match_the_definition();
}

#[test]
fn weight_gradient_kernels_match_the_definition() {
    self_checks::weight_gradient_kernels_match_the_definition();
}

#[test]
fn combined_rows_give_the_statistics_of_all_values_far_from_zero_too() {
    self_checks::combined_rows_give_the_statistics_of_all_values_far_from_zero_too();
}

#[test]
fn recorded_images_give_the_rows_statistics_in_any_order() {
    self_checks::recorded_images_give_the_rows_statistics_in_any_order();
}

#[test]
#[should_panic(expected = "image 1's moments were not recorded")]
fn a_missing_image_is_caught() {
    self_checks::a_missing_image_is_caught();
}

#[test]
fn valid_ranges_match_a_scan() {
    self_checks::valid_ranges_match_a_scan();
}

#[test]
fn a_missed_write_is_caught_and_a_full_one_passes() {
    self_checks::a_missed_write_is_caught_and_a_full_one_passes();
}

#[test]
fn the_switch_reads_the_usual_spellings_and_refuses_others() {
    self_checks::the_switch_reads_the_usual_spellings_and_refuses_others();
}
