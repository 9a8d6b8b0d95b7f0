//! `openapi.yaml` must describe exactly the routes the app registers.

use std::collections::BTreeSet;

use tessera::http::{ADMIN_ROUTES, PUBLIC_ROUTES};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn spec() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

#[test]
fn spec_paths_and_methods_match_the_registered_routes() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let registered: BTreeSet<(String, String)> = PUBLIC_ROUTES
        .iter()
        .chain(ADMIN_ROUTES)
        .map(|(method, path)| (method.to_uppercase(), path.to_string()))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unimplemented: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
    assert!(
        unimplemented.is_empty(),
        "openapi.yaml documents routes the app lacks: {unimplemented:?}"
    );
}

#[test]
fn every_operation_documents_its_responses() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let responses = operation["responses"].as_mapping();
                assert!(
                    responses.is_some_and(|r| !r.is_empty()),
                    "{method} {path:?} has no responses"
                );
            }
        }
    }
}
