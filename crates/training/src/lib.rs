//! Staff security training (issue 16): the module pack format (versioned
//! modules, each a page in English and Finnish and a few multiple-choice
//! questions with feedback per option and a pass mark), the pack compiled
//! into the binary, grading, safe Markdown rendering, and where a staff
//! member stands with each module. Pure: no I/O, no clock (time comes in).
//!
//! What a standing *means* for access (a banner, or patient data refused) is
//! `confidant-policy`'s decision (`policy::training_standing`); storing
//! completions and auditing them is the identity service's.
#![forbid(unsafe_code)]

mod builtin;
mod markdown;
mod pack;
mod standing;

pub use builtin::{BUILT_IN_PACK, built_in_pack};
pub use markdown::render_markdown;
pub use pack::{
    Answers, Choice, Graded, MAX_PACK_BYTES, Module, ModuleRole, Pack, PackError, Question, QuestionResult, Text,
    parse_pack,
};
pub use standing::{
    Assignment, Completion, ModuleState, ModuleStatus, ModuleVersion, Rules, Summary, module_status, summary,
};
