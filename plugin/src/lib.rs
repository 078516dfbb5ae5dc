//! rebasefs-plugin: reads containers-storage, plans rebases and keeps the repository.
