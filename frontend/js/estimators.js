// What the forms offer per estimator family: the families of each task (as
// fastapi/mlops/contracts/model_definition.py's ESTIMATORS) and the hyperparameters the
// train form asks for by name (any other goes in its JSON). Plain JSON between the
// markers, so tests/local/test_dashboard_server.py checks it against the platform.

export const FORMS = /* JSON */ {
  "estimators": {
    "classification": [
      "random_forest",
      "extra_trees",
      "hist_gradient_boosting",
      "logistic_regression"
    ],
    "regression": [
      "random_forest",
      "extra_trees",
      "hist_gradient_boosting",
      "ridge"
    ]
  },
  "hyperparameters": {
    "random_forest": [
      {
        "name": "n_estimators",
        "label": "Trees (n_estimators)",
        "min": 1,
        "placeholder": "100"
      },
      {
        "name": "max_depth",
        "label": "Max depth",
        "min": 1,
        "placeholder": "none"
      }
    ],
    "extra_trees": [
      {
        "name": "n_estimators",
        "label": "Trees (n_estimators)",
        "min": 1,
        "placeholder": "100"
      },
      {
        "name": "max_depth",
        "label": "Max depth",
        "min": 1,
        "placeholder": "none"
      }
    ],
    "hist_gradient_boosting": [
      {
        "name": "max_iter",
        "label": "Boosting rounds (max_iter)",
        "min": 1,
        "placeholder": "100"
      },
      {
        "name": "max_depth",
        "label": "Max depth",
        "min": 1,
        "placeholder": "none"
      }
    ],
    "logistic_regression": [
      {
        "name": "C",
        "label": "Inverse regularisation (C)",
        "step": "any",
        "placeholder": "1.0"
      },
      {
        "name": "max_iter",
        "label": "Iterations (max_iter)",
        "min": 1,
        "placeholder": "100"
      }
    ],
    "ridge": [
      {
        "name": "alpha",
        "label": "Regularisation (alpha)",
        "step": "any",
        "placeholder": "1.0"
      }
    ]
  }
} /* end JSON */;

export const ESTIMATORS = FORMS.estimators;
export const MAIN_HYPERPARAMETERS = FORMS.hyperparameters;
