//! The local backend and its job supervisor. (Being written.)

use std::path::{Path, PathBuf};

use super::{Backend, JobHandle, JobSpec, JobState};

/// Runs jobs on this machine, each under a detached supervisor.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    jobs_dir: PathBuf,
}

impl LocalBackend {
    pub fn new(jobs_dir: PathBuf) -> Self {
        LocalBackend { jobs_dir }
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }
    fn submit(&self, _spec: &JobSpec) -> anyhow::Result<JobHandle> {
        anyhow::bail!("not yet: {}", self.jobs_dir.display())
    }
    fn find(&self, _key: &str) -> anyhow::Result<Option<JobHandle>> {
        Ok(None)
    }
    fn status(&self, _handle: &JobHandle) -> anyhow::Result<JobState> {
        Ok(JobState::Lost("not yet".into()))
    }
    fn cancel(&self, _handle: &JobHandle) -> anyhow::Result<()> {
        Ok(())
    }
    fn logs(&self, _handle: &JobHandle, _tail_bytes: usize) -> anyhow::Result<String> {
        Ok(String::new())
    }
}

/// The hidden `reagent __supervise JOB_DIR` subcommand.
pub fn supervise(_job_dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
