//! Assignments on disk (docs/API.md, "Assignments"): what an assignment is
//! (`settings`), finding one by name without leaving the root and packing
//! its build context (`find`), rendering its templates with the spec
//! (`template`), shared-image mode (`image`), the `FROM` lines and `--pull`
//! (`base_images`), the files each instance gets (`instance_files`), the
//! label line every build stage gets (`stage_label`), the hidden check
//! (`check`). Uses
//! `protocol` (assignment names) and `support`; knows no Docker, no
//! registry, no HTTP. Inside, files name each other; the rest uses what is
//! re-exported here.

pub(crate) mod base_images;
pub(crate) mod check;
mod find;
pub(crate) mod image;
pub(crate) mod instance_files;
mod settings;
mod stage_label;
mod template;

pub use check::CHECK_TEMPLATE;
pub use find::{Assignment, RenderedContext};
pub use settings::{
    AssignmentError, CheckOutput, Mode, Settings, CONTEXT_DIR, DOCKERFILE, DOCKERFILE_IN_CONTEXT,
    SETTINGS_FILE, TEMPLATE_SUFFIX,
};
pub use template::{shell_quote, shell_quote_one_line, Renderer, TemplateVars};
