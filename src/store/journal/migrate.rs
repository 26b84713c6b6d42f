//! Moving messages between `smp-server-messages.log` and the journal (`smp-server journal`).
