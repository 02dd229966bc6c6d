"""One paragraph per built-in dataset, shown on the Train page and by ``python -m kamoe_viz datasets``.

The first sentence stands alone (the CLI prints only it); the rest says what the regimes are and how it is split.
"""

from __future__ import annotations

_RANDOM_SPLIT = (
    "Rows are split at random from the seed (test first, then validation from the rest); inputs are "
    "standardised with the training rows' statistics only."
)
_TIME_SPLIT = (
    "Windows are split in time order (train, then validation, then test; never shuffled across those "
    "boundaries), and the scaling is fit on the training period only."
)

DESCRIPTIONS: dict[str, str] = {
    "regimes": "Synthetic regression made of distinct regimes, the default (no download). The angle of (x0, x1) "
    "splits the plane into sectors and each sector has its own function of x2 and x3, plus Gaussian "
    "noise; extra inputs beyond x3 are pure noise. The true regime of every row is known, so you can "
    "check whether the gate sends each regime to its own expert. " + _RANDOM_SPLIT,
    "moons": "Two interleaving half-moons, a 2-D classification. The boundary is curved, so a linear gate cannot "
    "split the plane cleanly while a GRKAN gate can; the regime of a point is its moon. " + _RANDOM_SPLIT,
    "xor": "XOR of the signs of x1 and x2, a 2-D classification with Gaussian noise on the points. No single "
    "linear rule solves it, but four experts (one per quadrant, the regime) each have an easy job. " + _RANDOM_SPLIT,
    "spiral": "Interleaved spiral arms (2 to 5), a 2-D classification that is hard for a linear gate. The regime of "
    "a point is its arm; noise twists the arms. " + _RANDOM_SPLIT,
    "blobs": "Gaussian blobs (2 to 8), a 2-D classification where each blob is a class and a regime. The noise "
    "option is the blobs' standard deviation: raise it to make them overlap. " + _RANDOM_SPLIT,
    "california": "California Housing, the KAMoE paper's tabular benchmark: median house value of 20,640 block "
    "groups (1990 census) from income, house age, rooms, occupancy and location. scikit-learn "
    "downloads it once and caches it; offline, point env KAMOE_CALIFORNIA_CSV or the csv_path option "
    "at a CSV with scikit-learn's column names. With the default test fraction 0.2 the 16,512 "
    "train+validation rows match the reference. " + _RANDOM_SPLIT,
    "diabetes": "Diabetes progression one year after baseline from 10 clinical measurements (442 patients; "
    "scikit-learn, bundled, no download). A small, noisy regression: good for seeing overfitting. " + _RANDOM_SPLIT,
    "wine": "Three wine cultivars from 13 chemical measurements (178 wines; scikit-learn, bundled). The regime is "
    "the cultivar, so expert specialisation can be scored. " + _RANDOM_SPLIT + " Stratified by class.",
    "breast_cancer": "Malignant vs benign tumours from 30 cell-nucleus features (569 cases; scikit-learn, bundled). "
    "The regime is the diagnosis. " + _RANDOM_SPLIT + " Stratified by class.",
    "regime_series": "A synthetic series whose dynamics switch between 2 to 4 hidden regimes (Markov switching), "
    "driven by an input u. Each regime has its own rule (trend-following, oscillating, volatile, "
    "mean-reverting); the model sees a window of past (y, u) and predicts y a few steps ahead, and "
    "the true regime of each predicted step is known. " + _TIME_SPLIT,
    "sunspots": "Yearly sunspot numbers 1700-2008 (309 years; statsmodels, bundled, offline). The ~11-year cycle "
    "changes amplitude, so the network must read the phase from the window. " + _TIME_SPLIT,
    "co2": "Weekly atmospheric CO2 at Mauna Loa 1958-2001 (2,284 weeks; statsmodels, bundled, offline), gaps "
    "interpolated, with the season as two extra inputs. By default the model predicts the week-to-week "
    "change (stationary); the option 'Predict: level' asks for the level itself, whose rising trend puts "
    "the test weeks beyond the training range: a hard extrapolation test. " + _TIME_SPLIT,
}
