//! The model this instance serves, opened on first use and kept for the instance's life (a
//! host that reuses instances pays for the tokenizer and chat template once).

use std::cell::RefCell;
use std::rc::Rc;

use crate::api;
use crate::config::Config;
use crate::error::ApiError;

/// The open model and the settings it was opened with.
pub struct Served {
    /// This instance's settings.
    pub config: Rc<Config>,
    /// The open model.
    pub model: api::Model,
    /// What it is.
    pub info: api::ModelInfo,
}

impl Served {
    /// The model name a response carries: the request's, when it names what is served, one
    /// of its aliases, or any name with the alias `*`; the served name when it names none.
    pub fn check_model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None => Ok(self.config.model.clone()),
            Some(m) if m == self.info.name || self.config.answers_to(m) => Ok(m.to_string()),
            Some(m) => Err(ApiError::model_not_found(m, &self.config.model)),
        }
    }
}

thread_local! {
    static SERVED: RefCell<Option<Rc<Served>>> = const { RefCell::new(None) };
}

/// The served model, opening it if this is the instance's first request that needs it.
pub fn get() -> Result<Rc<Served>, ApiError> {
    if let Some(s) = SERVED.with(|s| s.borrow().clone()) {
        return Ok(s);
    }
    let config = Config::current().map_err(ApiError::unavailable)?;
    let options = api::OpenOptions {
        backend: None,
        context_length: config.context_length,
    };
    let model = api::Model::open(&config.model, options).map_err(ApiError::from)?;
    let info = model.info();
    let served = Rc::new(Served {
        config,
        model,
        info,
    });
    SERVED.with(|s| *s.borrow_mut() = Some(served.clone()));
    Ok(served)
}
