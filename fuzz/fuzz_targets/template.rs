//! Rendering any template with any data never panics and never runs away
//! (the renderer has a fuel limit).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ua::assignment::{Renderer, TemplateVars};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line is the data (JSON), the rest the template.
    let (data_line, template) = text.split_once('\n').unwrap_or(("{}", text));
    let data: serde_json::Value = serde_json::from_str(data_line).unwrap_or_default();
    let vars = TemplateVars { data: &data, spec_id: "spec", instance_id: "instance" };
    let _ = Renderer::new(&vars).render("fuzz.tmpl", template);
});
