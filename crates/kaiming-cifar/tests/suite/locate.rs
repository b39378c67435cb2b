//! The search order for the data folder, with candidates given by hand.

use crate::common;

use std::path::PathBuf;

use kaiming_cifar::{BinaryFormat, DataError, Layout, SearchPaths, Source};

#[test]
fn search_order_is_flag_env_working_dir_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        common::write_cifar10(&d, 1);
        d
    };
    let (flag, env, local) = (dir("flag"), dir("env"), dir("local"));
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(cache.join("train").join("cat")).unwrap();

    let mut paths = SearchPaths {
        flag: Some(flag.clone()),
        env: Some(env.clone()),
        working_dir: Some(local.clone()),
        burn_cache: Some(cache.clone()),
    };
    let expect = |paths: &SearchPaths, dir: &PathBuf, source: Source| {
        let found = paths.locate().unwrap();
        assert_eq!((&found.dir, found.source), (dir, source));
    };
    expect(&paths, &flag, Source::Flag);
    paths.flag = None;
    expect(&paths, &env, Source::Env);
    paths.env = None;
    expect(&paths, &local, Source::WorkingDir);
    assert_eq!(
        paths.locate().unwrap().layout,
        Layout::Binary(BinaryFormat::Cifar10)
    );
    paths.working_dir = Some(tmp.path().join("absent"));
    expect(&paths, &cache, Source::BurnCache);
    assert_eq!(paths.locate().unwrap().layout, Layout::ImageFolder);

    paths.burn_cache = Some(tmp.path().join("absent-too"));
    match paths.locate().unwrap_err() {
        DataError::NotFound { searched } => assert_eq!(searched.len(), 2),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_named_folder_without_data_is_an_error_not_a_fall_through() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    common::write_cifar10(&local, 1);
    let paths = SearchPaths {
        flag: Some(tmp.path().join("typo")),
        working_dir: Some(local.clone()),
        ..SearchPaths::default()
    };
    assert!(matches!(paths.locate(), Err(DataError::Io { .. })));

    let half = tmp.path().join("half");
    common::write_cifar10(&half, 1);
    std::fs::remove_file(half.join("test_batch.bin")).unwrap();
    let paths = SearchPaths {
        env: Some(half),
        working_dir: Some(local),
        ..SearchPaths::default()
    };
    assert!(matches!(paths.locate(), Err(DataError::MissingFile { .. })));
}
