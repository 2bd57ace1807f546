"""Ray, in one place: a study's trials run as Ray Tune trials, on this machine or a cluster. ``inputs`` checks
every input of a sweep before Ray is imported; ``driver`` runs the sweep (the ``urn-study sweep`` command);
``trainable`` is what runs inside each Tune trial; ``searchers`` and ``progress`` are what the driver gives Tune;
``records`` and ``resume`` are what a sweep leaves for --resume.
Nothing here is imported by the core (model, data, trial): Ray stays at the edge."""
