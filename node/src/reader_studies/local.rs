//! A site's side of a study against its own store: selecting and assigning cases, loading the
//! study readers' head annotations into [`LocalData`], and storing the released consensus as
//! annotations of the reader `consensus`. Nothing here leaves the site.

use std::collections::{BTreeMap, BTreeSet};

use fedanno_protocol::reader_study::ReadCount;
use thiserror::Error;

use super::jobs::{ConsensusOutcome, LocalData, SegCase, SegConsensus, consensus_map, ds_labels};
use super::manifest::{Manifest, TaskKind};
use crate::annotations::codec;
use crate::annotations::model::{Content, Kind, Label, Purpose, Segment, Segmentation};
use crate::site::store::{AnnotationFilter, NewVersion, ReaderStudyCaseRow, Store, StoreError};
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

fn kind_of(m: &Manifest) -> Kind {
    match m.task.kind {
        TaskKind::Segmentation => Kind::Segmentation,
        TaskKind::Classification => Kind::Label,
    }
}

/// A candidate case: study id, series id, the study readers who annotated it.
type CaseReaders = (i64, Option<i64>, BTreeSet<String>);

/// What `study assign` selected.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assignment {
    pub cases: u64,
    pub reads: Vec<ReadCount>,
    pub readers: Vec<String>,
}

/// Selects this site's cases for a study: series (or studies, for labels without a series) of
/// the manifest's modality that at least one of the study's readers here has annotated.
pub async fn assign(store: &Store, m: &Manifest, me: &str) -> Result<Assignment, LocalError> {
    let readers: BTreeSet<String> = m.readers_at(me).into_iter().collect();
    let kinds: BTreeMap<String, &'static str> = m.reader_list().into_iter().collect();
    let rows = store
        .list_annotations(AnnotationFilter {
            kind: Some(kind_of(m)),
            purpose: Some(Purpose::Read),
            ..Default::default()
        })
        .await?;
    // case uid -> (study id, series id, readers)
    let mut cases: BTreeMap<String, CaseReaders> = BTreeMap::new();
    let mut modality_ok: BTreeMap<String, bool> = BTreeMap::new();
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
        if !modality_ok.contains_key(&uid) {
            let case = store
                .resolve_case(&uid)
                .await
                .map_err(|e| LocalError::Case {
                    case: uid.clone(),
                    problem: e.to_string(),
                })?;
            let ok = match (case.series_id, &m.cases.modality) {
                (Some(id), Some(want)) => {
                    let g = store.series_grid(id).await.map_err(|e| LocalError::Case {
                        case: uid.clone(),
                        problem: e.to_string(),
                    })?;
                    g.modality.eq_ignore_ascii_case(want)
                }
                _ => true,
            };
            modality_ok.insert(uid.clone(), ok);
            if ok {
                cases.insert(
                    uid.clone(),
                    (case.study_id, case.series_id, BTreeSet::new()),
                );
            }
        }
        if let Some(entry) = cases.get_mut(&uid) {
            entry.2.insert(row.reader.clone());
        }
    }
    let limit = if m.cases.max_per_site == 0 {
        usize::MAX
    } else {
        m.cases.max_per_site as usize
    };
    let chosen: Vec<(String, CaseReaders)> = cases.into_iter().take(limit).collect();
    let mut reads: BTreeMap<&'static str, (BTreeSet<String>, u64)> = BTreeMap::new();
    for (_, (_, _, rs)) in &chosen {
        for r in rs {
            let kind = kinds.get(r).copied().unwrap_or("local");
            let e = reads.entry(kind).or_default();
            e.0.insert(r.clone());
            e.1 += 1;
        }
    }
    let rows: Vec<ReaderStudyCaseRow> = chosen
        .iter()
        .map(|(uid, (study_id, series_id, _))| ReaderStudyCaseRow {
            case_uid: uid.clone(),
            dicom_study_id: *study_id,
            series_id: *series_id,
        })
        .collect();
    store.assign_reader_study_cases(&m.study.id, rows).await?;
    let used: BTreeSet<String> = chosen.iter().flat_map(|c| c.1.2.iter().cloned()).collect();
    Ok(Assignment {
        cases: chosen.len() as u64,
        reads: reads
            .into_iter()
            .map(|(kind, (rs, n))| ReadCount {
                kind: kind.to_string(),
                readers: rs.len() as u64,
                reads: n,
            })
            .collect(),
        readers: used.into_iter().collect(),
    })
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

/// Loads the study readers' head annotations of the assigned cases, in the study's rater order.
pub async fn load(store: &Store, m: &Manifest, me: &str) -> Result<LocalData, LocalError> {
    let all = m.all_readers();
    let index: BTreeMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let here: BTreeSet<String> = m.readers_at(me).into_iter().collect();
    let cases = store.reader_study_cases(&m.study.id).await?;
    match m.task.kind {
        TaskKind::Segmentation => {
            let n_labels = m.task.labels.len() + 1;
            let mut out = Vec::with_capacity(cases.len());
            for c in &cases {
                let Some(series_id) = c.series_id else {
                    continue;
                };
                let grid = store
                    .series_grid(series_id)
                    .await
                    .map_err(|e| LocalError::Case {
                        case: c.case_uid.clone(),
                        problem: e.to_string(),
                    })?;
                let dims = grid.dims().map(|d| d as usize);
                let versions = store
                    .versions(
                        AnnotationFilter {
                            series_id: Some(series_id),
                            kind: Some(Kind::Segmentation),
                            purpose: Some(Purpose::Read),
                            ..Default::default()
                        },
                        true,
                    )
                    .await?;
                let mut readers = Vec::new();
                for v in versions {
                    if !here.contains(&v.reader) {
                        continue;
                    }
                    let Some(&ri) = index.get(v.reader.as_str()) else {
                        continue;
                    };
                    let Content::Segmentation(s) =
                        codec::decode(&codec::decompress(&v.content)?, &v.content_hash)?
                    else {
                        continue;
                    };
                    if s.dims.map(|d| d as usize) != dims {
                        return Err(LocalError::Case {
                            case: c.case_uid.clone(),
                            problem: format!(
                                "reader {}'s mask is not on the series grid",
                                v.reader
                            ),
                        });
                    }
                    if s.labels.iter().any(|&l| l as usize >= n_labels) {
                        return Err(LocalError::Case {
                            case: c.case_uid.clone(),
                            problem: format!(
                                "reader {}'s mask has labels beyond the study's {} labels",
                                v.reader,
                                n_labels - 1
                            ),
                        });
                    }
                    readers.push((ri, s.labels));
                }
                readers.sort_by_key(|r| r.0);
                if !readers.is_empty() {
                    out.push(SegCase {
                        id: c.case_uid.clone(),
                        dims,
                        spacing: grid.spacing(),
                        readers,
                    });
                }
            }
            Ok(LocalData::Segmentation {
                n_raters: all.len(),
                n_labels,
                cases: out,
                histograms: Default::default(),
            })
        }
        TaskKind::Classification => {
            let k = m.task.categories.len();
            let mut ratings = Ratings::new(cases.len(), all.len(), k);
            for (u, c) in cases.iter().enumerate() {
                let versions = store
                    .versions(
                        AnnotationFilter {
                            study_id: Some(c.dicom_study_id),
                            series_id: c.series_id,
                            kind: Some(Kind::Label),
                            purpose: Some(Purpose::Read),
                            ..Default::default()
                        },
                        true,
                    )
                    .await?;
                for v in versions {
                    if !here.contains(&v.reader) || v.series_id != c.series_id {
                        continue;
                    }
                    let Some(&ri) = index.get(v.reader.as_str()) else {
                        continue;
                    };
                    let Content::Label(l) =
                        codec::decode(&codec::decompress(&v.content)?, &v.content_hash)?
                    else {
                        continue;
                    };
                    if m.task.scheme.as_ref().is_some_and(|s| *s != l.scheme) {
                        continue;
                    }
                    let cat = category_index(&m.task.categories, &l.category).ok_or_else(|| {
                        LocalError::Case {
                            case: c.case_uid.clone(),
                            problem: format!(
                                "reader {} chose {:?}, which is not one of the study's categories",
                                v.reader, l.category
                            ),
                        }
                    })?;
                    ratings
                        .set(u, ri, Some(cat))
                        .map_err(|e| LocalError::Other(e.to_string()))?;
                }
            }
            Ok(LocalData::Classification { ratings })
        }
    }
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
    let reader = match store.reader(CONSENSUS_READER).await {
        Ok(r) => r,
        Err(_) => {
            use crate::annotations::readers::{ReaderKind, consortium_pseudonym};
            store
                .add_reader(
                    CONSENSUS_READER,
                    ReaderKind::Model,
                    None,
                    consortium_pseudonym(ReaderKind::Model, CONSENSUS_READER),
                )
                .await
                .map_err(|e| LocalError::Other(e.to_string()))?
        }
    };
    let cases = store.reader_study_cases(&m.study.id).await?;
    let mut versions = Vec::new();
    let reason = format!(
        "consensus of study {} ({})",
        m.study.id,
        m.consensus.method.as_str()
    );
    let mut push = |content: Content, c: &ReaderStudyCaseRow| {
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
    };
    match (data, outcome) {
        (
            LocalData::Segmentation {
                cases: seg,
                n_labels,
                ..
            },
            ConsensusOutcome::Staple { params, .. },
        ) => {
            let cons = SegConsensus::Staple(params.clone());
            save_seg(&cons, seg, &cases, *n_labels, m, &mut push)?;
        }
        (
            LocalData::Segmentation {
                cases: seg,
                n_labels,
                ..
            },
            ConsensusOutcome::Multi { params, priors, .. },
        ) => {
            let cons = SegConsensus::Multi {
                params: params.clone(),
                priors: priors.clone(),
            };
            save_seg(&cons, seg, &cases, *n_labels, m, &mut push)?;
        }
        (LocalData::Classification { ratings }, ConsensusOutcome::DawidSkene { params, .. }) => {
            let labels = ds_labels(params, ratings)?;
            for (c, l) in cases.iter().zip(labels) {
                let Some(l) = l else { continue };
                let Some(category) = m.task.categories.get(l as usize) else {
                    continue;
                };
                push(
                    Content::Label(Label {
                        scheme: m.task.scheme.clone().unwrap_or_else(|| "free".into()),
                        category: category.clone(),
                        confidence: None,
                        comment: None,
                    }),
                    c,
                );
            }
        }
        _ => {
            return Err(LocalError::Other(
                "the consensus does not fit the study's task".into(),
            ));
        }
    }
    let n = versions.len() as u64;
    if !versions.is_empty() {
        store
            .save_versions(versions)
            .await
            .map_err(|e| LocalError::Other(e.to_string()))?;
    }
    Ok(n)
}

fn save_seg(
    cons: &SegConsensus,
    seg: &[SegCase],
    cases: &[ReaderStudyCaseRow],
    n_labels: usize,
    m: &Manifest,
    push: &mut impl FnMut(Content, &ReaderStudyCaseRow),
) -> Result<(), LocalError> {
    let rows: BTreeMap<&str, &ReaderStudyCaseRow> =
        cases.iter().map(|c| (c.case_uid.as_str(), c)).collect();
    for case in seg {
        let Some(row) = rows.get(case.id.as_str()).copied() else {
            continue;
        };
        let labels = consensus_map(cons, case, n_labels)?;
        let segments = m
            .task
            .labels
            .iter()
            .enumerate()
            .map(|(i, name)| Segment {
                value: (i + 1) as u8,
                name: name.clone(),
            })
            .collect();
        push(
            Content::Segmentation(Segmentation {
                dims: case.dims.map(|d| d as u32),
                segments,
                labels,
            }),
            row,
        );
    }
    Ok(())
}
