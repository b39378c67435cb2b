//! What the process environment changes: the only test in its binary, because it sets
//! variables that other tests running in parallel would otherwise see.

#[path = "suite/common/mod.rs"]
mod common;

use kaiming_cifar::{DownloadConfig, OFFICIAL_URL, Source, locate_data_dir};

#[test]
fn environment_variables_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_cifar10(tmp.path(), 1);

    // SAFETY: this binary runs no other test, so no other thread reads the environment.
    unsafe {
        std::env::remove_var("CIFAR10_URL");
    }
    assert_eq!(DownloadConfig::default().url, OFFICIAL_URL);
    unsafe {
        std::env::set_var("CIFAR10_URL", "http://127.0.0.1:9/mirror.tar.gz");
        std::env::set_var("CIFAR10_DIR", tmp.path());
    }
    let config = DownloadConfig::new("somewhere");
    assert_eq!(config.url, "http://127.0.0.1:9/mirror.tar.gz");
    // The MD5 the dataset's page publishes for cifar-10-binary.tar.gz, written out.
    assert_eq!(config.md5, "c32a1d4ab5d03f1284b67883e8d87530");

    let located = locate_data_dir(None).unwrap();
    assert_eq!(
        (located.dir.as_path(), located.source),
        (tmp.path(), Source::Env)
    );
    // The flag wins over the variable.
    let other = tempfile::tempdir().unwrap();
    common::write_cifar10(other.path(), 1);
    let located = locate_data_dir(Some(other.path())).unwrap();
    assert_eq!(
        (located.dir.as_path(), located.source),
        (other.path(), Source::Flag)
    );
}
