//! The vocabularies of a reader study's life: its state at this site, the coordinator's view
//! of each participant, this site's role in it, a run's phase and the kinds of release. Stored
//! in the database and shown by `fedanno study list|show` under exactly these names.

vocabulary! {
    /// A reader study's state at this site.
    pub enum ReaderStudyState("reader-study state") {
        /// Launched here (this site coordinates it).
        Launched = "launched",
        /// Announced to this site by its coordinator.
        Announced = "announced",
        Joined = "joined",
        Declined = "declined",
        /// This site's cases are assigned.
        Assigned = "assigned",
        /// The coordinator is running it.
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
}

vocabulary! {
    /// The coordinator's view of one participant.
    pub enum SiteStatus("site status") {
        /// The announcement was delivered.
        Announced = "announced",
        /// The announcement could not be delivered.
        Unreachable = "unreachable",
        Joined = "joined",
        Declined = "declined",
        /// The site reported its assigned cases.
        Assigned = "assigned",
        /// The site fell silent during a round and was left out.
        Dropped = "dropped",
        /// The site's data is in the consensus.
        Contributed = "contributed",
    }
}

vocabulary! {
    /// This site's role in a reader study.
    pub enum ReaderStudyRole("reader-study role") {
        Coordinator = "coordinator",
        Participant = "participant",
    }
}

vocabulary! {
    /// What a coordinator's run is doing.
    #[derive(Default)]
    pub enum RunPhase("run phase") {
        #[default]
        Consensus = "consensus",
        /// Sending the consensus to the sites.
        Release = "release",
        Quality = "quality",
        Done = "done",
    }
}

vocabulary! {
    /// What a coordinator releases to the sites (and a site stores as a result).
    pub enum ReleaseKind("release") {
        Consensus = "consensus",
        Report = "report",
    }
}

impl ReaderStudyState {
    /// States in which this site takes part in the study's rounds.
    pub fn participating(self) -> bool {
        matches!(
            self,
            ReaderStudyState::Joined | ReaderStudyState::Assigned | ReaderStudyState::Completed
        )
    }
}

impl SiteStatus {
    /// Statuses in which a site takes part in the study's rounds.
    pub fn participating(self) -> bool {
        matches!(
            self,
            SiteStatus::Joined | SiteStatus::Assigned | SiteStatus::Contributed
        )
    }

    /// Statuses a run starts from: every site that joined, dropped ones included (they get
    /// another chance).
    pub fn runnable(self) -> bool {
        self.participating() || self == SiteStatus::Dropped
    }
}
