//! Rendering templates with the spec: MiniJinja with ua's filters, strict
//! about undefined variables, and shell quoting that is exact.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::assignment::settings::{AssignmentError, DOCKERFILE_TEMPLATE};

/// Renders templates with one spec's variables; errors come without spec data.
pub struct Renderer {
    env: Environment<'static>,
    context: Value,
}

impl Renderer {
    /// A renderer for one spec's variables.
    pub fn new(vars: &TemplateVars) -> Renderer {
        Renderer {
            env: template_env(),
            context: vars.to_value(),
        }
    }

    /// Renders one template; `name` appears in error messages.
    pub fn render(&self, name: &str, source: &str) -> Result<String, AssignmentError> {
        self.env
            .render_named_str(name, source, &self.context)
            .map_err(|e| AssignmentError::Template {
                summary: summarise(name, &e),
                detail: describe(&e),
            })
    }
}

/// The variables templates see (docs/API.md, "Templates").
pub struct TemplateVars<'a> {
    /// The spec's `data`.
    pub data: &'a serde_json::Value,
    /// The spec's `specID`.
    pub spec_id: &'a str,
    /// The ID of the instance being made.
    pub instance_id: &'a str,
}

impl TemplateVars<'_> {
    fn to_value(&self) -> Value {
        minijinja::context! {
            data => Value::from(minijinja::value::Serde(self.data)),
            spec_id => self.spec_id,
            instance_id => self.instance_id,
        }
    }
}

pub(super) fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are valid");
    env.set_syntax(syntax);
    env.set_fuel(Some(1_000_000));
    env.add_filter("json", |v: Value| {
        serde_json::to_string(&defined(v)?).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
        })
    });
    env.add_filter("b64", |v: Value| Ok(BASE64.encode(text_of(&defined(v)?))));
    env.add_filter("shell", |state: &minijinja::State, v: Value| {
        let text = text_of(&defined(v)?);
        Ok(if state.name().ends_with(DOCKERFILE_TEMPLATE) {
            shell_quote_one_line(&text)
        } else {
            shell_quote(&text)
        })
    });
    env
}

/// Strict mode lets undefined values reach filters: ours refuse them too.
pub(super) fn defined(value: Value) -> Result<Value, minijinja::Error> {
    if value.is_undefined() {
        Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError))
    } else {
        Ok(value)
    }
}

/// A value as text: strings as they are, anything else as it prints.
pub(super) fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// One POSIX shell word that stands for exactly `text`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A shell word for `text` that fits on one line, for a Dockerfile: there a
/// newline ends the instruction and a backslash-newline joins lines, so a
/// text with newlines is printed line by line. Trailing newlines are lost
/// (command substitution drops them); all else is exact.
pub fn shell_quote_one_line(text: &str) -> String {
    if !text.contains('\n') {
        return shell_quote(text);
    }
    let lines: Vec<String> = text.split('\n').map(shell_quote).collect();
    format!("\"$(printf '%s\\n' {})\"", lines.join(" "))
}

/// A render error in one line, without the debug dump that would show values.
/// The kind and place of a render error, in words without values: `name`
/// is the template ua rendered (the error's own name could come from data),
/// and MiniJinja's kind names are fixed words. Its detail may quote data.
pub(super) fn summarise(name: &str, e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!(
            "the template {name} failed to render at line {line}: {}",
            e.kind()
        ),
        None => format!("the template {name} failed to render: {}", e.kind()),
    }
}

pub(super) fn describe(e: &minijinja::Error) -> String {
    let place = match (e.name(), e.line()) {
        (Some(name), Some(line)) => format!(" (in {name}, line {line})"),
        (Some(name), None) => format!(" (in {name})"),
        _ => String::new(),
    };
    match e.detail() {
        Some(detail) => format!("{}: {detail}{place}", e.kind()),
        None => format!("{}{place}", e.kind()),
    }
}
