//! The validated MailDomain and what it should look like from the outside, free of I/O: shared
//! by the controller, the live checks, the policy server and `mailsec render`. Above `domain`
//! (the record grammars) and `api` (the resource types), below everything that does I/O.

pub mod claim;
pub mod desired;
pub mod rotation;
pub mod validate;
