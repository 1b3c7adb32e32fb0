//! The statistics a study releases, by the names sites see: a job's statistic, a roster's
//! `schema`, the statistics a manifest foresees, and what policy rules' `statistics = [...]`
//! name. The names are part of the protocol (rosters carry them) and of every site's policy.
//! Adding a statistic starts here.

vocabulary! {
    /// One kind of released statistic. Serialised, parsed and printed as its name.
    pub enum Statistic("statistic") {
        /// Binary STAPLE sufficient statistics, one secure sum per EM iteration.
        Staple = "staple",
        /// Binary STAPLE, one round: the rater-pattern histogram.
        StaplePatternHistogram = "staple-pattern-histogram",
        /// Multi-label STAPLE seed and sufficient statistics.
        MultilabelStaple = "multilabel-staple",
        /// Dawid–Skene sufficient statistics.
        DawidSkene = "dawid-skene",
        /// Per-reader overlap with the consensus segmentation (and its histograms).
        SegmentationMetrics = "segmentation-metrics",
        /// Per-reader confusion against the classification consensus and agreement statistics.
        Agreement = "agreement",
        /// Benchmark vectors that carry nothing about the site (`fedanno bench secagg`).
        Bench = "bench",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact() {
        assert!("kappa".parse::<Statistic>().is_err());
        assert!("Staple".parse::<Statistic>().is_err());
        assert_eq!(
            Statistic::StaplePatternHistogram.as_str(),
            "staple-pattern-histogram"
        );
    }
}
