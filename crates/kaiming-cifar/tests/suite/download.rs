//! The download against a tiny HTTP server on 127.0.0.1 serving synthetic archives.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use kaiming_cifar::{
    ARCHIVE_ROOT, CIFAR10_FILES, CifarDataset, DataError, DownloadConfig, Split, download,
};
use md5::{Digest, Md5};

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    /// The bytes, with their true length.
    Whole(Vec<u8>),
    /// The first half of the bytes, announcing the full length, then the connection closes.
    CutShort(Vec<u8>),
}

/// Serves `routes` on a fresh port until the test process ends; returns `http://127.0.0.1:port`.
fn serve(routes: HashMap<&'static str, Reply>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let _ = match routes.get(path) {
                Some(Reply::Whole(bytes)) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
                .and_then(|()| stream.write_all(bytes)),
                Some(Reply::CutShort(bytes)) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
                .and_then(|()| stream.write_all(&bytes[..bytes.len() / 2])),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    base
}

/// A regular-file tar header; the name is written raw, so unsafe names can be made too.
fn header(name: &str, size: usize, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_cksum();
    header
}

/// A gzipped tar of a small synthetic CIFAR-10 folder (3 images per file), plus `extra`
/// entries (name, bytes, kind) appended after it.
fn archive(extra: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    archive_without(None, extra)
}

/// [`archive`] with one of the data files left out.
fn archive_without(skip: Option<&str>, extra: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let staging = tempfile::tempdir().unwrap();
    common::write_cifar10(staging.path(), 3);
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    builder
        .append(
            &header(&format!("{ARCHIVE_ROOT}/"), 0, tar::EntryType::Directory),
            &[][..],
        )
        .unwrap();
    for name in CIFAR10_FILES.iter().filter(|n| Some(**n) != skip) {
        let bytes = std::fs::read(staging.path().join(name)).unwrap();
        let path = format!("{ARCHIVE_ROOT}/{name}");
        builder
            .append(
                &header(&path, bytes.len(), tar::EntryType::Regular),
                &bytes[..],
            )
            .unwrap();
    }
    let meta = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    let path = format!("{ARCHIVE_ROOT}/batches.meta.txt");
    builder
        .append(
            &header(&path, meta.len(), tar::EntryType::Regular),
            &meta[..],
        )
        .unwrap();
    for (name, bytes, kind) in extra {
        builder
            .append(&header(name, bytes.len(), *kind), *bytes)
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config(base: &str, path: &str, md5: String, dest: &Path) -> DownloadConfig {
    DownloadConfig {
        url: format!("{base}{path}"),
        md5,
        dest: dest.to_path_buf(),
        progress: false,
    }
}

/// Fails the test if `dest` (created by the download) is still there in any form.
fn assert_left_nothing(dest: &Path) {
    assert!(
        !dest.exists(),
        "left behind: {:?}",
        std::fs::read_dir(dest).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
}

#[test]
fn good_archive_is_unpacked_into_place() {
    let good = archive(&[]);
    let base = serve(HashMap::from([(
        "/good.tar.gz",
        Reply::Whole(good.clone()),
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("datasets");

    let dir = download(&config(&base, "/good.tar.gz", md5_hex(&good), &dest)).unwrap();
    assert_eq!(dir, dest.join(ARCHIVE_ROOT));
    assert_eq!(CifarDataset::load(&dir, Split::Train).unwrap().len(), 15);
    assert_eq!(CifarDataset::load(&dir, Split::Test).unwrap().len(), 3);
    // Only the dataset folder remains: no archive, no staging folder.
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, [ARCHIVE_ROOT]);

    // A second download refuses to replace it.
    let err = download(&config(&base, "/good.tar.gz", md5_hex(&good), &dest)).unwrap_err();
    assert!(matches!(err, DataError::AlreadyExists { .. }), "{err:?}");
}

#[test]
fn wrong_checksum_fails_and_leaves_nothing() {
    let good = archive(&[]);
    let base = serve(HashMap::from([("/a.tar.gz", Reply::Whole(good))]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("datasets");
    let err = download(&config(
        &base,
        "/a.tar.gz",
        kaiming_cifar::OFFICIAL_MD5.into(),
        &dest,
    ))
    .unwrap_err();
    assert!(matches!(err, DataError::DownloadChecksum { .. }), "{err:?}");
    assert!(
        err.to_string().contains(kaiming_cifar::OFFICIAL_MD5),
        "{err}"
    );
    assert_left_nothing(&dest);
}

#[test]
fn truncated_archive_fails_and_leaves_nothing() {
    let good = archive(&[]);
    let half = good[..good.len() / 2].to_vec();
    let base = serve(HashMap::from([
        ("/cut.tar.gz", Reply::CutShort(good.clone())),
        ("/half.tar.gz", Reply::Whole(half.clone())),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("datasets");

    // The connection drops before the announced length.
    let err = download(&config(&base, "/cut.tar.gz", md5_hex(&good), &dest)).unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert_left_nothing(&dest);

    // A complete transfer of a truncated file (its own MD5 given, so only unpacking can tell).
    let err = download(&config(&base, "/half.tar.gz", md5_hex(&half), &dest)).unwrap_err();
    assert!(matches!(err, DataError::Archive { .. }), "{err:?}");
    assert_left_nothing(&dest);
}

#[test]
fn unsafe_or_unexpected_entries_fail_and_leave_nothing() {
    let cases: [(&str, &[u8], tar::EntryType); 5] = [
        ("../escaped.bin", b"evil", tar::EntryType::Regular),
        (
            "cifar-10-batches-bin/../../escaped.bin",
            b"evil",
            tar::EntryType::Regular,
        ),
        ("/tmp/absolute.bin", b"evil", tar::EntryType::Regular),
        (
            "cifar-10-batches-bin/extra.bin",
            b"x",
            tar::EntryType::Regular,
        ),
        (
            "cifar-10-batches-bin/readme.html",
            b"",
            tar::EntryType::Symlink,
        ),
    ];
    let archives: Vec<Vec<u8>> = cases.iter().map(|c| archive(&[*c])).collect();
    let names = ["/0", "/1", "/2", "/3", "/4"];
    let base = serve(
        names
            .iter()
            .zip(&archives)
            .map(|(n, a)| (*n, Reply::Whole(a.clone())))
            .collect(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("deep").join("datasets");
    for ((name, bytes), case) in names.iter().zip(&archives).zip(&cases) {
        let err = download(&config(&base, name, md5_hex(bytes), &dest)).unwrap_err();
        assert!(
            matches!(err, DataError::Archive { .. }),
            "{}: {err:?}",
            case.0
        );
        assert!(
            err.to_string().contains(case.0.trim_start_matches('/')),
            "{err}"
        );
        assert_left_nothing(&dest);
        assert!(!tmp.path().join("deep").join("escaped.bin").exists());
        assert!(!tmp.path().join("escaped.bin").exists());
    }
}

#[test]
fn http_errors_are_reported_with_the_url() {
    let base = serve(HashMap::new());
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("datasets");
    let err = download(&config(&base, "/missing", String::new(), &dest)).unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert!(err.to_string().contains("/missing"), "{err}");
    assert_left_nothing(&dest);
}

#[test]
fn incomplete_archive_fails_and_leaves_nothing() {
    let partial = archive_without(Some("data_batch_2.bin"), &[]);
    let base = serve(HashMap::from([(
        "/partial.tar.gz",
        Reply::Whole(partial.clone()),
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("datasets");
    let err = download(&config(&base, "/partial.tar.gz", md5_hex(&partial), &dest)).unwrap_err();
    assert!(
        matches!(&err, DataError::Archive { reason, .. } if reason.contains("data_batch_2.bin")),
        "{err:?}"
    );
    assert_left_nothing(&dest);
}
