//! `reagent:strategy/memory`: a small key-value store private to one
//! strategy in one campaign, kept by the host across calls and hibernation.
//!
//! Grants: linked for generators. Without the grant a component importing
//! it still loads and nothing is kept: `get` answers nothing, `keys` an
//! empty list and `set` an error naming the grant. The whole store (keys
//! plus values) is capped at `max_memory_store_bytes`; a `set` past the
//! quota fails with a message, it does not trap. Every answer is recorded.

use super::CallState;
use crate::contract::memory::Host;

impl Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let size = key.len() as u64;
        let granted = self.memory_granted;
        self.answer("memory.get", &key, size, |s| {
            s.memory.entries.get(&key).filter(|_| granted).cloned()
        })
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let size = (key.len() + value.len()) as u64;
        let request = (&key, hex::encode(&value));
        let granted = self.memory_granted;
        self.answer("memory.set", request, size, |s| {
            if !granted {
                return Err(
                    "the operator did not grant `memory` to this strategy ([strategies] grants): nothing is kept"
                        .to_string(),
                );
            }
            let old = s
                .memory
                .entries
                .get(&key)
                .map_or(0, |v| (key.len() + v.len()) as u64);
            let new_size = s.memory.size() - old + size;
            let quota = s.limits.max_memory_store_bytes;
            if new_size > quota {
                Err(format!(
                    "memory quota exceeded: the store would hold {new_size} bytes; the quota is {quota}"
                ))
            } else {
                s.memory.entries.insert(key.clone(), value.clone());
                Ok(())
            }
        })
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let size = key.len() as u64;
        self.answer("memory.delete", &key, size, |s| {
            s.memory.entries.remove(&key);
        })
    }

    fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        let granted = self.memory_granted;
        self.answer("memory.keys", (), 0, |s| {
            if granted {
                s.memory.entries.keys().cloned().collect()
            } else {
                Vec::new()
            }
        })
    }
}
