"""Land-cover classifiers on features: feature sets, spatial folds, classifiers, metrics,
reports and plots."""
