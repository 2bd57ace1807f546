"""Reading a network (README "Reading a network"): what a W computes and how |W| is arranged, part of the core
because a trial measures its own W. ``function`` reads what a network computes by lesions (phase, depth,
widths, margins); ``structure`` the |W| descriptors; ``measure`` a trial's record of one W (both, beside
their nulls); ``recovery`` a teacher's recovery; ``planted`` hand-built networks of known phase;
``weight_image`` the per-run W heatmap; ``untrained`` what untrained W read as.
Like the rest of the core, nothing here imports Ray, MLflow or the analysis of recorded studies."""
