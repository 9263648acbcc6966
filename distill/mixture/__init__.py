"""Data mixtures: several sources (each a teacher, its problems and a kind) sampled, filtered and drawn to one
composition.

:mod:`~distill.mixture.sources` turns each configured source into what the sample stage already knows how to
do (a run config whose ``teacher`` is the source's, and its problems with ids ``name/...``);
:mod:`~distill.mixture.sampling` runs the sample stage per source into one view;
:mod:`~distill.mixture.filtering` screens all sources together (duplicates across sources, contamination
against every eval set) and verifies each by its kind; :mod:`~distill.mixture.compose` draws the training set
to the configured composition and records the composition reached.  See docs/mixture.md.
"""
