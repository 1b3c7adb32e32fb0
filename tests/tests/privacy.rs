//! Privacy canary: canary PHI in the DICOM headers (patient name and id, institution,
//! description) and a canary byte pattern in the pixel data of every site's images, then two
//! whole studies on three nodes. No byte any node hands to the network (captured at the
//! transport boundary, before Noise encrypts it) and no log line contains a canary or an
//! original UID; the capture does contain the study's own messages, so the test can fail.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fedanno_node::network::daemon::StartOptions;
use fedanno_node::network::p2p::Tap;
use fedanno_node::network::policy::Policy;
use fedanno_node::tools::demo::{self, SEGMENTATION_MANIFEST};
use fedanno_node::tools::synth::{self, SynthOptions};
use fedanno_tests::network::{Consortium, with_policy};

const NAME_CANARY: &[u8] = b"CANARYPHI";
const PIXEL_CANARY: &[u8] = b"PXCANARY";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Rewrites every synthetic DICOM file in place: the header's SYNTHETIC texts become the name
/// canary (same length, so the file stays valid), patient ids get a canary prefix, and the
/// last pixel bytes become the pixel canary. Returns the patient-id canaries.
fn plant_canaries(dicom: &Path) -> Vec<Vec<u8>> {
    let mut ids = Vec::new();
    let mut stack = vec![dicom.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mut b = std::fs::read(&p).unwrap();
            let mut i = 0;
            while i + 9 <= b.len() {
                if &b[i..i + 9] == b"SYNTHETIC" {
                    b[i..i + 9].copy_from_slice(NAME_CANARY);
                }
                if &b[i..i + 4] == b"SYN-" {
                    b[i..i + 4].copy_from_slice(b"CNY-");
                    let end = b[i..]
                        .iter()
                        .position(|&c| c == 0 || c == b' ')
                        .map_or(b.len(), |n| i + n);
                    ids.push(b[i..end].to_vec());
                }
                i += 1;
            }
            let n = b.len();
            b[n - PIXEL_CANARY.len()..].copy_from_slice(PIXEL_CANARY);
            std::fs::write(&p, &b).unwrap();
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_leaves_a_site_or_reaches_a_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let wire: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let ids = ["site-a", "site-b", "site-c"];
    let c = Consortium::new(&ids);
    let mut secrets: Vec<Vec<u8>> = vec![NAME_CANARY.to_vec(), PIXEL_CANARY.to_vec()];
    for (i, id) in ids.iter().enumerate() {
        let out = c.tmp.path().join("synth").join(id);
        let readers = demo::site_readers(&demo::local_reader(id));
        synth::generate(&SynthOptions {
            out: out.clone(),
            cases: 10,
            size: [24, 24, 12],
            seed: i as u64 + 1,
            case_prefix: format!("{id}-case-"),
            readers: readers.clone(),
        })
        .unwrap();
        let planted = plant_canaries(&out.join("dicom"));
        assert!(!planted.is_empty());
        secrets.extend(planted);
        // Original study and series UIDs never leave either.
        let cases = std::fs::read_to_string(out.join("cases.csv")).unwrap();
        for line in cases.lines().skip(1) {
            for uid in line.split(',').skip(1) {
                secrets.push(uid.trim().as_bytes().to_vec());
            }
        }
        demo::import_synth(c.site(i), &out, &readers).await.unwrap();
    }
    let w = wire.clone();
    let tap = Tap(Arc::new(move |b: &[u8]| {
        if let Ok(mut v) = w.lock() {
            v.push(b.to_vec());
        }
    }));
    let nodes = c
        .start_with(|_| StartOptions {
            tap: Some(tap.clone()),
            ..with_policy(Policy::default_site())
        })
        .await;
    let manifests = [
        SEGMENTATION_MANIFEST.to_string(),
        demo::classification_manifest(&ids),
    ];
    for text in &manifests {
        let (id, _) = nodes[0].handle.reader_study_launch(text).await.unwrap();
        for n in &nodes {
            assert!(n.handle.reader_study_join(&id).await.unwrap().joined);
            n.handle.reader_study_assign(&id).await.unwrap();
        }
        nodes[0]
            .handle
            .reader_study_run_and_report(&id)
            .await
            .unwrap();
    }
    for n in nodes {
        n.stop().await;
    }
    let frames = wire.lock().unwrap().clone();
    let logs = logs.0.lock().unwrap().clone();
    assert!(frames.len() > 50, "only {} frames captured", frames.len());
    assert!(
        frames.iter().any(|f| contains(f, b"lung-nodules")),
        "the tap sees plaintext"
    );
    assert!(contains(&logs, b"lung-nodules"), "the log capture works");
    // The canaries really are in the images the sites ingested.
    let sample = std::fs::read_dir(c.tmp.path().join("synth/site-a/dicom"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::read_dir(&sample)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(contains(&std::fs::read(file).unwrap(), NAME_CANARY));
    for secret in &secrets {
        let shown = String::from_utf8_lossy(secret).to_string();
        assert!(
            !frames.iter().any(|f| contains(f, secret)),
            "{shown} was sent over the network"
        );
        assert!(!contains(&logs, secret), "{shown} appears in a log line");
    }
}
