//! A site's side of a study against its own store: selecting and assigning cases, loading the
//! study readers' head annotations into [`LocalData`], and storing the released consensus as
//! annotations of the reader `consensus`. Nothing here leaves the site.

use std::collections::{BTreeMap, BTreeSet};

use fedanno_protocol::reader_study::ReadCount;
use thiserror::Error;

use super::jobs::{ConsensusOutcome, LocalData, SegCase, SegConsensus, consensus_map, ds_labels};
use super::manifest::{Manifest, TaskKind};
use crate::annotations::codec;
use crate::annotations::model::{
    Algorithm, Content, Description, Kind, Label, Method, Purpose, Segment, Segmentation,
};
use crate::annotations::readers::{ReaderKind, consortium_pseudonym};
use crate::site::store::{
    AnnotationFilter, NewVersion, ReaderRow, ReaderStudyCaseRow, Store, StoreError, VersionRow,
};
use fedanno_stats::ratings::Ratings;

/// The reader whose annotations hold a study's consensus.
pub const CONSENSUS_READER: &str = "consensus";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case {case}: {problem}")]
    Case { case: String, problem: String },
    #[error("stored annotation: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("{0}")]
    Em(#[from] super::jobs::EmError),
    #[error("{0}")]
    Other(String),
}

/// The annotation kind a study's readers produce.
fn annotation_kind(m: &Manifest) -> Kind {
    match m.task.kind {
        TaskKind::Segmentation => Kind::Segmentation,
        TaskKind::Classification => Kind::Label,
    }
}

fn case_problem(case: &str, problem: String) -> LocalError {
    LocalError::Case {
        case: case.to_owned(),
        problem,
    }
}

/// Turns an error about one case into a [`LocalError::Case`].
fn at_case<E: ToString>(case: &str) -> impl FnOnce(E) -> LocalError + '_ {
    move |e| case_problem(case, e.to_string())
}

/// A candidate case: its DICOM study and series, and the study readers who annotated it.
struct Candidate {
    study_id: i64,
    series_id: Option<i64>,
    readers: BTreeSet<String>,
}

/// What `study assign` selected.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub cases: u64,
    pub reads: Vec<ReadCount>,
    pub readers: Vec<String>,
}

/// Selects this site's cases for a study: series (or studies, for labels without a series) of
/// the manifest's modality that at least one of the study's readers here has annotated.
pub async fn assign(store: &Store, m: &Manifest, me: &str) -> Result<Assignment, LocalError> {
    let limit = if m.cases.max_per_site == 0 {
        usize::MAX
    } else {
        m.cases.max_per_site as usize
    };
    let chosen: Vec<(String, Candidate)> = candidates(store, m, me)
        .await?
        .into_iter()
        .take(limit)
        .collect();
    let rows: Vec<ReaderStudyCaseRow> = chosen
        .iter()
        .map(|(uid, c)| ReaderStudyCaseRow {
            case_uid: uid.clone(),
            dicom_study_id: c.study_id,
            series_id: c.series_id,
        })
        .collect();
    store.assign_reader_study_cases(&m.study.id, rows).await?;
    let used: BTreeSet<String> = chosen
        .iter()
        .flat_map(|c| c.1.readers.iter().cloned())
        .collect();
    Ok(Assignment {
        cases: chosen.len() as u64,
        reads: read_counts(m, &chosen),
        readers: used.into_iter().collect(),
    })
}

/// Every case of the manifest's modality that a study reader here has annotated, by uid.
async fn candidates(
    store: &Store,
    m: &Manifest,
    me: &str,
) -> Result<BTreeMap<String, Candidate>, LocalError> {
    let readers: BTreeSet<String> = m.readers_at(me).into_iter().collect();
    let rows = store
        .list_annotations(AnnotationFilter {
            kind: Some(annotation_kind(m)),
            purpose: Some(Purpose::Read),
            ..Default::default()
        })
        .await?;
    let mut cases: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for row in rows {
        if !readers.contains(&row.reader) {
            continue;
        }
        if m.task.kind == TaskKind::Classification
            && m.task.scheme.as_ref().is_some_and(|s| *s != row.scheme)
        {
            continue;
        }
        let uid = row.series.clone().unwrap_or_else(|| row.study.clone());
        if checked.insert(uid.clone())
            && let Some(c) = of_modality(store, m, &uid).await?
        {
            cases.insert(uid.clone(), c);
        }
        if let Some(c) = cases.get_mut(&uid) {
            c.readers.insert(row.reader.clone());
        }
    }
    Ok(cases)
}

/// The case named `uid`, if it is of the manifest's modality (any case, without one).
async fn of_modality(
    store: &Store,
    m: &Manifest,
    uid: &str,
) -> Result<Option<Candidate>, LocalError> {
    let case = store.resolve_case(uid).await.map_err(at_case(uid))?;
    if let (Some(id), Some(want)) = (case.series_id, &m.cases.modality) {
        let grid = store.series_grid(id).await.map_err(at_case(uid))?;
        if !grid.modality.eq_ignore_ascii_case(want) {
            return Ok(None);
        }
    }
    Ok(Some(Candidate {
        study_id: case.study_id,
        series_id: case.series_id,
        readers: BTreeSet::new(),
    }))
}

/// Readers and reads of the chosen cases by reader kind (in the kinds' name order).
fn read_counts(m: &Manifest, chosen: &[(String, Candidate)]) -> Vec<ReadCount> {
    let kinds: BTreeMap<String, ReaderKind> = m.reader_list().into_iter().collect();
    let mut reads: BTreeMap<&'static str, (BTreeSet<String>, u64)> = BTreeMap::new();
    for r in chosen.iter().flat_map(|c| &c.1.readers) {
        let kind = kinds.get(r).copied().unwrap_or(ReaderKind::Local);
        let e = reads.entry(kind.as_str()).or_default();
        e.0.insert(r.clone());
        e.1 += 1;
    }
    reads
        .into_iter()
        .map(|(kind, (rs, n))| ReadCount {
            kind: kind.to_string(),
            readers: rs.len() as u64,
            reads: n,
        })
        .collect()
}

fn category_index(categories: &[String], value: &str) -> Option<u32> {
    if let Some(i) = categories.iter().position(|c| c == value) {
        return Some(i as u32);
    }
    let x: f64 = value.trim().parse().ok()?;
    categories
        .iter()
        .position(|c| c.trim().parse::<f64>().ok() == Some(x))
        .map(|i| i as u32)
}

/// The study's raters as this site sees them.
struct Raters {
    /// Every reader's rater index (the study's rater order).
    index: BTreeMap<String, usize>,
    /// The readers whose annotations this site contributes.
    here: BTreeSet<String>,
}

impl Raters {
    fn new(m: &Manifest, me: &str) -> Self {
        Raters {
            index: m
                .all_readers()
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r, i))
                .collect(),
            here: m.readers_at(me).into_iter().collect(),
        }
    }

    /// The rater index of a reader who reads for the study here.
    fn of(&self, reader: &str) -> Option<usize> {
        if !self.here.contains(reader) {
            return None;
        }
        self.index.get(reader).copied()
    }
}

/// Head versions of the readers' reads of one kind.
fn reads(kind: Kind, study_id: Option<i64>, series_id: Option<i64>) -> AnnotationFilter {
    AnnotationFilter {
        study_id,
        series_id,
        kind: Some(kind),
        purpose: Some(Purpose::Read),
        ..Default::default()
    }
}

/// A stored version's content, checked against its hash.
fn content(v: &VersionRow) -> Result<Content, LocalError> {
    Ok(codec::decode(
        &codec::decompress(&v.content)?,
        &v.content_hash,
    )?)
}

/// Loads the study readers' head annotations of the assigned cases, in the study's rater order.
pub async fn load(store: &Store, m: &Manifest, me: &str) -> Result<LocalData, LocalError> {
    let raters = Raters::new(m, me);
    let cases = store.reader_study_cases(&m.study.id).await?;
    match m.task.kind {
        TaskKind::Segmentation => load_segmentations(store, m, &raters, &cases).await,
        TaskKind::Classification => load_ratings(store, m, &raters, &cases).await,
    }
}

async fn load_segmentations(
    store: &Store,
    m: &Manifest,
    raters: &Raters,
    cases: &[ReaderStudyCaseRow],
) -> Result<LocalData, LocalError> {
    let n_labels = m.task.labels.len() + 1;
    let mut out = Vec::with_capacity(cases.len());
    for c in cases {
        let Some(series_id) = c.series_id else {
            continue;
        };
        if let Some(case) = seg_case(store, raters, c, series_id, n_labels).await? {
            out.push(case);
        }
    }
    Ok(LocalData::Segmentation {
        n_raters: raters.index.len(),
        n_labels,
        cases: out,
        histograms: Default::default(),
    })
}

/// One case's masks by the study's readers here (`None` when nobody here read it).
async fn seg_case(
    store: &Store,
    raters: &Raters,
    c: &ReaderStudyCaseRow,
    series_id: i64,
    n_labels: usize,
) -> Result<Option<SegCase>, LocalError> {
    let grid = store
        .series_grid(series_id)
        .await
        .map_err(at_case(&c.case_uid))?;
    let dims = grid.dims().map(|d| d as usize);
    let versions = store
        .versions(reads(Kind::Segmentation, None, Some(series_id)), true)
        .await?;
    let mut readers = Vec::new();
    for v in versions {
        let Some(ri) = raters.of(&v.reader) else {
            continue;
        };
        let Content::Segmentation(s) = content(&v)? else {
            continue;
        };
        let problem = if s.dims.map(|d| d as usize) != dims {
            Some(format!(
                "reader {}'s mask is not on the series grid",
                v.reader
            ))
        } else if let Some(o) = s.overlaps.first() {
            // The study's task is one label per voxel (its consensus and metrics are).
            Some(format!(
                "reader {}'s mask has segment {} overlapping another; the study's task takes one label per voxel",
                v.reader, o.value
            ))
        } else if s.labels.iter().any(|&l| l as usize >= n_labels) {
            Some(format!(
                "reader {}'s mask has labels beyond the study's {} labels",
                v.reader,
                n_labels - 1
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(case_problem(&c.case_uid, problem));
        }
        readers.push((ri, s.labels));
    }
    readers.sort_by_key(|r| r.0);
    Ok((!readers.is_empty())
        .then(|| SegCase::new(c.case_uid.clone(), dims, grid.spacing(), readers)))
}

async fn load_ratings(
    store: &Store,
    m: &Manifest,
    raters: &Raters,
    cases: &[ReaderStudyCaseRow],
) -> Result<LocalData, LocalError> {
    let k = m.task.categories.len();
    let mut ratings = Ratings::new(cases.len(), raters.index.len(), k);
    for (u, c) in cases.iter().enumerate() {
        let versions = store
            .versions(
                reads(Kind::Label, Some(c.dicom_study_id), c.series_id),
                true,
            )
            .await?;
        for v in versions {
            if v.series_id != c.series_id {
                continue;
            }
            let Some(ri) = raters.of(&v.reader) else {
                continue;
            };
            let Content::Label(l) = content(&v)? else {
                continue;
            };
            if let Some(cat) = rating(m, c, &v.reader, &l)? {
                ratings
                    .set(u, ri, Some(cat))
                    .map_err(|e| LocalError::Other(e.to_string()))?;
            }
        }
    }
    Ok(LocalData::Classification { ratings })
}

/// A reader's label as a category index (`None` for a label of another scheme).
fn rating(
    m: &Manifest,
    c: &ReaderStudyCaseRow,
    reader: &str,
    l: &Label,
) -> Result<Option<u32>, LocalError> {
    if m.task.scheme.as_ref().is_some_and(|s| *s != l.scheme) {
        return Ok(None);
    }
    let cat = category_index(&m.task.categories, &l.category).ok_or_else(|| {
        case_problem(
            &c.case_uid,
            format!(
                "reader {reader} chose {:?}, which is not one of the study's categories",
                l.category
            ),
        )
    })?;
    Ok(Some(cat))
}

/// Stores the released consensus for every assigned case of `data` (what [`load`] gave for
/// this study) as a version of the reader `consensus` (added as a model reader if missing).
/// Returns the number of versions written.
pub async fn store_consensus(
    store: &Store,
    m: &Manifest,
    data: &LocalData,
    outcome: &ConsensusOutcome,
) -> Result<u64, LocalError> {
    let reader = consensus_reader(store).await?;
    let cases = store.reader_study_cases(&m.study.id).await?;
    let reason = format!(
        "consensus of study {} ({})",
        m.study.id,
        m.consensus.method.as_str()
    );
    // Each case's consensus is encoded and compressed as soon as it is made: memory holds the
    // stored bytes of every case, not their label maps.
    let mut versions: Vec<NewVersion> = Vec::new();
    consensus_contents(m, data, outcome, &cases, &mut |content, c| {
        let encoded = codec::encode(&content);
        let scheme = match &content {
            Content::Label(l) => l.scheme.clone(),
            _ => String::new(),
        };
        versions.push(NewVersion {
            reader: reader.db_id,
            kind: content.kind(),
            series: c.series_id,
            study: c.dicom_study_id,
            scheme,
            purpose: Purpose::Read,
            author: format!("study {}", m.study.id),
            reason: reason.clone(),
            source: format!("study:{}", m.study.id),
            content_hash: codec::hash(&encoded),
            content: codec::compress(&encoded),
            summary: content.summary().to_string(),
        });
    })?;
    let n = versions.len() as u64;
    if !versions.is_empty() {
        store
            .save_versions(versions)
            .await
            .map_err(|e| LocalError::Other(e.to_string()))?;
    }
    Ok(n)
}

/// The reader `consensus`, added as a model reader the first time.
async fn consensus_reader(store: &Store) -> Result<ReaderRow, LocalError> {
    if let Ok(r) = store.reader(CONSENSUS_READER).await {
        return Ok(r);
    }
    store
        .add_reader(
            CONSENSUS_READER,
            ReaderKind::Model,
            None,
            consortium_pseudonym(ReaderKind::Model, CONSENSUS_READER),
        )
        .await
        .map_err(|e| LocalError::Other(e.to_string()))
}

/// What receives each consensus annotation with its case, one at a time.
type Emit<'e> = dyn FnMut(Content, &ReaderStudyCaseRow) + 'e;

/// The consensus annotation of every assigned case the released model decides, given to
/// `emit` with its case as it is made.
fn consensus_contents(
    m: &Manifest,
    data: &LocalData,
    outcome: &ConsensusOutcome,
    cases: &[ReaderStudyCaseRow],
    emit: &mut Emit<'_>,
) -> Result<(), LocalError> {
    match (data, outcome.seg_consensus(), outcome) {
        (
            LocalData::Segmentation {
                cases: seg,
                n_labels,
                ..
            },
            Some(cons),
            _,
        ) => seg_contents(m, &cons, seg, cases, *n_labels, emit),
        (LocalData::Classification { ratings }, _, ConsensusOutcome::DawidSkene { params, .. }) => {
            let labels = ds_labels(params, ratings)?;
            let scheme = m.task.scheme.clone().unwrap_or_else(|| "free".into());
            for (c, l) in cases.iter().zip(labels) {
                let Some(category) = l.and_then(|l| m.task.categories.get(l as usize)) else {
                    continue;
                };
                let label = Label {
                    scheme: scheme.clone(),
                    category: category.clone(),
                    confidence: None,
                    comment: None,
                };
                emit(Content::Label(label), c);
            }
            Ok(())
        }
        _ => Err(LocalError::Other(
            "the consensus does not fit the study's task".into(),
        )),
    }
}

/// The description of a consensus segment whose label the task gives codes: made by the
/// consensus method (an algorithm of this software, named with its version).
fn task_description(m: &Manifest, label: &str) -> Option<Description> {
    let c = m.task.codes.iter().find(|c| c.label == label)?;
    Some(Description {
        category: c.category.clone(),
        property_type: c.property_type.clone(),
        colour: c.colour,
        method: Method::Automatic,
        algorithm: Some(Algorithm {
            name: format!("fedanno {} consensus", m.consensus.method.as_str()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            family: None,
        }),
    })
}

fn seg_contents(
    m: &Manifest,
    cons: &SegConsensus,
    seg: &[SegCase],
    cases: &[ReaderStudyCaseRow],
    n_labels: usize,
    emit: &mut Emit<'_>,
) -> Result<(), LocalError> {
    let rows: BTreeMap<&str, &ReaderStudyCaseRow> =
        cases.iter().map(|c| (c.case_uid.as_str(), c)).collect();
    let segments: Vec<Segment> = m
        .task
        .labels
        .iter()
        .enumerate()
        .map(|(i, name)| Segment {
            description: task_description(m, name),
            ..Segment::named((i + 1) as u8, name.clone())
        })
        .collect();
    for case in seg {
        let Some(row) = rows.get(case.id.as_str()).copied() else {
            continue;
        };
        let labels = consensus_map(cons, case, n_labels)?;
        let content = Content::Segmentation(Segmentation {
            dims: case.dims.map(|d| d as u32),
            segments: segments.clone(),
            labels,
            overlaps: Vec::new(),
        });
        emit(content, row);
    }
    Ok(())
}
