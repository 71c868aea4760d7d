//! What an after-action review trusts (pure): the ledger's hash chain and the report's
//! aggregation. The store writes and reads the rows; nothing here touches a database.

pub mod checkpoint;
pub mod export;
pub mod fold;
pub mod ledger;
pub mod report;
