//! One backend for a workspace that picks, per job, where it runs: a job
//! whose spec has Slurm options goes to Slurm, the rest run locally. Later
//! calls find the backend from the job folder (a Slurm job's folder has its
//! batch script from before submission on), so a restarted host needs no
//! other record.

use std::path::PathBuf;

use super::local::LocalBackend;
use super::slurm::{SCRIPT_FILE, SlurmBackend};
use super::{Backend, JobHandle, JobSpec, JobState};

pub struct Dispatch {
    jobs_dir: PathBuf,
    pub local: LocalBackend,
    pub slurm: SlurmBackend,
}

impl Dispatch {
    /// Supervisors are this executable, locally and in batch scripts.
    pub fn new(jobs_dir: PathBuf) -> Self {
        let jobs_dir = std::path::absolute(&jobs_dir).unwrap_or(jobs_dir);
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("reagent"));
        Dispatch {
            local: LocalBackend::new(jobs_dir.clone()),
            slurm: SlurmBackend::new(jobs_dir.clone(), exe),
            jobs_dir,
        }
    }

    fn for_key(&self, key: &str) -> &dyn Backend {
        if self.jobs_dir.join(key).join(SCRIPT_FILE).exists() {
            &self.slurm
        } else {
            &self.local
        }
    }
}

impl Backend for Dispatch {
    fn folder(&self, key: &str) -> Option<std::path::PathBuf> {
        self.for_key(key).folder(key)
    }
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle> {
        if spec.slurm.is_some() {
            self.slurm.submit(spec)
        } else {
            self.local.submit(spec)
        }
    }

    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>> {
        self.for_key(key).find(key)
    }

    fn status(&self, handle: &JobHandle) -> anyhow::Result<JobState> {
        self.for_key(&handle.key).status(handle)
    }

    fn cancel(&self, handle: &JobHandle) -> anyhow::Result<()> {
        self.for_key(&handle.key).cancel(handle)
    }

    fn logs(&self, handle: &JobHandle, tail_bytes: usize) -> anyhow::Result<String> {
        self.for_key(&handle.key).logs(handle, tail_bytes)
    }

    fn progress(&self, handle: &JobHandle) -> anyhow::Result<Option<super::Curves>> {
        self.for_key(&handle.key).progress(handle)
    }
}
