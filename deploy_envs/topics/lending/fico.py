"""The FICO TransRisk credit-score tables, embedded, and Liu et al.'s map onto 300..850.

Provenance
----------
US Federal Reserve Board, *Report to the Congress on Credit Scoring and Its Effects on
the Availability and Affordability of Credit* (2007): 301,536 TransUnion TransRisk
scores from 2003, by race/ethnicity. These are the tables used by Hardt, Price & Srebro
(2016, "Equality of Opportunity in Supervised Learning", NeurIPS) and Liu, Dean, Rolf,
Simchowitz & Hardt (2018, "Delayed Impact of Fair Machine Learning", ICML):

* per group, the cumulative percentage of people at or below each TransRisk score
  (0..100 in steps of 0.5, 198 rows);
* per group and score, the percentage of people who defaulted, so
  ``P(repay | score) = 1 - default% / 100``;
* the number of people per group in the sample.

The block between the ``BEGIN GENERATED`` / ``END GENERATED`` markers is written by
:mod:`deploy_envs.topics.lending.build_fico_table` from the three raw CSV files
(``totals.csv``, ``transrisk_cdf_by_race_ssa.csv``,
``transrisk_performance_by_race_ssa.csv``; their sha256 are recorded below), with the
values exactly as published (two decimals), so nothing is downloaded at run time.

Score scale
-----------
TransRisk scores are percentiles. Liu et al. (2018, their code and Section 6) place
them on the familiar 300..850 FICO range through a piecewise-linear inverse of the
national FICO distribution, given as (score, percent of people in the 50-point band
starting there): :data:`FICO_BANDS`. :func:`transrisk_to_fico` is that map.

:func:`fico_population` turns the tables into what the lending env and the threshold
policies use: per group, the probability mass on 5-point score bins
``[300, 305), ..., [845, 850]`` (the CDF interpolated linearly between published
scores, the mass at the lowest score in the first bin) and the probability of
repayment at each bin's centre (linear interpolation of the published curve).
On 5-point bins Liu et al.'s +75 / -150 score moves are exactly +15 / -30 bins.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SCORE_MIN, SCORE_MAX = 300.0, 850.0
BIN_WIDTH = 5.0
FICO_BANDS = (
    (300, 2.1), (350, 4.2), (400, 5.4), (450, 6.5), (500, 7.9), (550, 9.6),
    (600, 12.0), (650, 13.8), (700, 17.0), (750, 15.8), (800, 5.7), (850, 0.0),
)
"""Liu et al. 2018: (FICO score, % of the US population in the band starting there)."""

# BEGIN GENERATED (build_fico_table.py)
GROUPS = ('White', 'Black', 'Hispanic', 'Asian')
TOTALS = (133165, 18274, 14702, 7906)  # people per group in the sample (row SSA of totals.csv)
SOURCE_SHA256 = {
    'totals.csv': '60ba4af53f9e61dedad3a5c4246390e666760e7552c98b08084dd3abf6b73f13',
    'transrisk_cdf_by_race_ssa.csv': '04c9691aa4b9fad43cc9722bc35a7d3f3f02ae1d724d49ae9d3bbe153f5b4f67',
    'transrisk_performance_by_race_ssa.csv': '77af654ac4173978c3cdb3a9186becb12ec35666d9e34e5b666a6a3972692ff9',
}
# TransRisk score, cumulative % at or below it (White Black Hispanic Asian),
# % of those at that score who defaulted (White Black Hispanic Asian)
_TABLE = """
0 0.01 0.07 0.01 0.00 98.54 99.67 99.05 94.77
0.5 0.26 1.19 0.47 0.13 97.95 99.23 98.49 94.48
1 1.16 5.33 2.22 0.88 97.36 98.80 97.93 94.19
1.5 1.43 6.47 2.74 1.07 96.77 98.36 97.38 93.90
2 1.80 7.89 3.49 1.32 96.18 97.93 96.82 93.61
2.5 2.09 9.27 4.04 1.51 95.58 97.49 96.26 93.32
3 2.55 11.20 5.02 1.83 94.99 97.06 95.71 93.03
3.5 2.96 12.82 5.77 2.20 94.40 96.62 95.15 92.74
4 3.39 14.58 6.60 2.48 93.81 96.18 94.60 92.45
4.5 3.54 15.16 6.92 2.58 93.22 95.75 94.04 92.15
5 4.19 17.72 8.22 3.10 92.63 95.31 93.48 91.86
5.5 4.72 19.81 9.31 3.49 92.04 94.88 92.93 91.57
6 5.28 21.72 10.18 3.90 91.45 94.44 92.37 91.28
6.5 5.56 22.93 10.80 4.08 90.86 94.01 91.82 90.99
7 6.11 24.69 11.94 4.40 90.27 93.57 91.26 90.70
7.5 6.34 25.51 12.38 4.72 89.68 93.14 90.70 90.41
8 6.81 26.95 13.18 5.02 89.09 92.70 90.15 90.12
8.5 7.02 27.55 13.60 5.14 88.50 92.27 89.59 89.83
9 7.34 28.59 14.09 5.38 87.91 91.83 89.04 89.54
9.5 7.60 29.38 14.65 5.53 87.32 91.39 88.48 89.25
10 7.95 30.45 15.20 5.74 86.73 90.96 87.92 88.96
10.5 8.20 31.16 15.69 5.84 86.05 90.71 87.42 87.46
11 8.62 32.29 16.38 6.25 85.37 90.46 86.92 85.96
11.5 8.94 33.33 16.92 6.46 84.69 90.21 86.41 84.46
12 9.56 35.11 18.03 6.95 84.01 89.96 85.91 82.96
12.5 9.92 36.07 18.58 7.29 83.33 89.70 85.41 81.46
13 10.40 37.20 19.36 7.61 82.65 89.45 84.90 79.96
13.5 10.76 38.21 19.95 7.97 81.97 89.20 84.40 78.45
14 11.41 39.79 21.10 8.40 81.30 88.95 83.89 76.95
14.5 11.75 40.75 21.76 8.68 80.62 88.70 83.39 75.45
15 12.29 42.07 22.62 9.09 79.94 88.45 82.89 73.95
15.5 12.61 42.91 23.21 9.45 79.26 88.20 82.38 72.45
16 13.09 44.04 24.02 9.75 78.58 87.95 81.88 70.95
16.5 13.43 44.88 24.69 10.05 77.90 87.70 81.38 69.45
17 13.84 45.83 25.49 10.32 77.22 87.45 80.87 67.95
17.5 14.13 46.58 25.97 10.53 76.54 87.20 80.37 66.45
18 14.56 47.40 26.62 10.96 75.86 86.94 79.87 64.95
18.5 14.84 48.07 27.10 11.11 75.18 86.69 79.36 63.45
19 15.24 48.76 27.78 11.51 74.50 86.44 78.86 61.95
19.5 15.50 49.29 28.21 11.80 73.82 86.19 78.35 60.45
20 16.54 53.05 30.31 12.37 73.14 85.94 77.85 58.95
20.5 16.88 54.04 30.93 12.68 71.27 84.17 75.88 57.78
21 17.37 55.24 31.90 13.02 69.41 82.39 73.91 56.60
21.5 17.64 55.90 32.31 13.24 67.54 80.62 71.95 55.43
22 18.07 56.76 33.01 13.60 65.68 78.84 69.98 54.26
22.5 18.38 57.37 33.55 13.90 63.81 77.07 68.01 53.09
23 18.77 58.20 34.24 14.19 61.95 75.29 66.04 51.91
23.5 19.13 58.86 35.06 14.41 60.08 73.52 64.08 50.74
24 19.73 60.00 36.19 14.95 58.22 71.75 62.11 49.57
24.5 20.09 60.62 36.80 15.20 56.35 69.97 60.14 48.40
25 20.54 61.45 37.68 15.51 54.49 68.20 58.17 47.22
25.5 20.84 62.08 38.17 15.72 52.62 66.42 56.20 46.05
26 21.27 62.93 38.95 16.18 50.76 64.65 54.24 44.88
26.5 21.67 63.54 39.65 16.62 48.89 62.87 52.27 43.71
27 22.27 64.39 40.60 17.10 47.03 61.10 50.30 42.53
27.5 22.62 65.00 41.28 17.40 45.16 59.33 48.33 41.36
28 23.19 65.85 42.21 17.90 43.30 57.55 46.36 40.19
28.5 23.55 66.41 42.93 18.27 41.43 55.78 44.40 39.02
29 24.28 67.28 44.01 18.93 39.57 54.00 42.43 37.84
29.5 24.71 67.65 44.54 19.16 37.70 52.23 40.46 36.67
30 25.24 68.37 45.32 19.73 35.84 50.45 38.49 35.50
30.5 25.59 68.85 45.74 20.18 34.91 49.37 37.74 34.37
31 26.22 69.59 46.69 21.00 33.99 48.29 36.99 33.24
31.5 26.58 69.98 47.24 21.39 33.07 47.21 36.24 32.11
32 27.07 70.60 48.05 21.81 32.15 46.12 35.49 30.98
32.5 27.48 71.06 48.74 22.37 31.23 45.04 34.74 29.85
33 28.00 71.61 49.35 22.92 30.31 43.96 33.99 28.72
33.5 28.40 72.14 49.96 23.32 29.39 42.88 33.24 27.59
34 28.94 72.67 50.64 23.95 28.47 41.80 32.49 26.46
34.5 29.43 73.15 51.28 24.34 27.55 40.71 31.74 25.33
35 30.16 73.95 52.20 25.13 26.63 39.63 30.99 24.20
35.5 30.42 74.20 52.64 25.48 25.71 38.55 30.24 23.08
36 31.17 74.83 53.57 26.16 24.79 37.47 29.49 21.95
36.5 31.50 75.11 53.96 26.50 23.86 36.38 28.74 20.82
37 32.27 75.87 55.04 27.39 22.94 35.30 27.99 19.69
37.5 32.61 76.16 55.38 27.69 22.02 34.22 27.24 18.56
38 33.36 76.88 56.39 28.54 21.10 33.14 26.49 17.43
38.5 33.66 77.19 56.71 28.81 20.18 32.06 25.74 16.30
39 34.32 77.72 57.55 29.66 19.26 30.97 24.99 15.17
39.5 34.56 77.95 57.83 29.87 18.34 29.89 24.24 14.04
40 35.09 78.32 58.37 30.37 17.42 28.81 23.49 12.91
40.5 35.48 78.75 58.79 30.85 16.96 28.11 22.99 12.73
41 36.06 79.28 59.47 31.54 16.51 27.40 22.48 12.54
41.5 36.33 79.49 59.83 31.86 16.05 26.70 21.97 12.36
42 36.97 80.06 60.60 32.52 15.59 25.99 21.46 12.17
42.5 37.35 80.43 61.06 32.95 15.14 25.29 20.95 11.99
43 37.97 80.95 61.77 33.54 14.68 24.59 20.44 11.80
43.5 38.36 81.22 62.19 34.08 14.23 23.88 19.93 11.62
44 38.98 81.76 63.03 34.85 13.77 23.18 19.42 11.44
44.5 39.54 82.11 63.58 35.46 13.31 22.47 18.91 11.25
45 40.03 82.48 64.22 36.03 12.86 21.77 18.40 11.07
45.5 40.56 82.85 64.77 36.69 12.40 21.07 17.89 10.88
46 41.13 83.23 65.37 37.36 11.94 20.36 17.38 10.70
46.5 41.50 83.42 65.71 37.92 11.49 19.66 16.87 10.51
47 42.26 83.87 66.47 38.80 11.03 18.96 16.36 10.33
47.5 42.59 84.08 66.81 39.33 10.58 18.25 15.85 10.15
48 43.37 84.46 67.50 40.14 10.12 17.55 15.34 9.96
48.5 43.77 84.66 67.87 40.58 9.66 16.84 14.84 9.78
49 44.24 84.94 68.33 41.11 9.21 16.14 14.33 9.59
49.5 44.72 85.20 68.78 41.65 8.75 15.44 13.82 9.41
50 45.33 85.56 69.38 42.38 8.30 14.73 13.31 9.22
50.5 45.63 85.75 69.68 42.78 8.11 14.60 13.09 8.94
51 46.19 86.05 70.26 43.63 7.93 14.46 12.86 8.66
51.5 46.62 86.24 70.66 44.12 7.75 14.33 12.64 8.38
52 47.20 86.46 71.23 44.99 7.57 14.19 12.42 8.10
52.5 47.60 86.69 71.73 45.63 7.39 14.06 12.20 7.82
53 48.16 86.99 72.28 46.50 7.21 13.92 11.98 7.54
53.5 48.66 87.27 72.71 47.31 7.03 13.79 11.76 7.26
54 49.29 87.56 73.29 48.22 6.85 13.65 11.54 6.98
54.5 49.59 87.70 73.60 48.75 6.66 13.52 11.32 6.70
55 50.25 88.06 74.20 49.75 6.48 13.38 11.09 6.42
55.5 50.62 88.28 74.57 50.16 6.30 13.24 10.87 6.14
56 51.21 88.53 75.14 50.87 6.12 13.11 10.65 5.86
56.5 51.58 88.72 75.53 51.46 5.94 12.97 10.43 5.58
57 52.19 88.94 76.13 52.31 5.76 12.84 10.21 5.30
57.5 52.55 89.05 76.46 52.81 5.58 12.70 9.99 5.02
58 53.17 89.25 77.02 53.48 5.40 12.57 9.77 4.74
58.5 53.59 89.41 77.40 54.05 5.22 12.43 9.55 4.46
59 54.21 89.68 77.88 54.89 5.03 12.30 9.32 4.18
59.5 54.65 89.85 78.24 55.45 4.85 12.16 9.10 3.90
60 55.32 90.16 78.79 56.40 4.67 12.03 8.88 3.62
60.5 55.64 90.28 79.10 56.92 4.58 11.81 8.75 3.69
61 56.15 90.49 79.47 57.42 4.49 11.59 8.62 3.75
61.5 56.65 90.67 79.82 58.05 4.39 11.38 8.50 3.81
62 57.15 90.86 80.23 58.70 4.30 11.16 8.37 3.87
62.5 57.69 91.06 80.63 59.66 4.21 10.94 8.24 3.93
63 58.23 91.26 80.90 60.28 4.12 10.72 8.11 3.99
63.5 58.82 91.48 81.34 61.07 4.03 10.51 7.98 4.05
64 59.43 91.65 81.80 61.86 3.93 10.29 7.85 4.11
64.5 59.71 91.77 82.04 62.22 3.84 10.07 7.72 4.17
65 60.29 91.91 82.47 63.02 3.75 9.85 7.59 4.23
65.5 60.66 92.03 82.65 63.48 3.66 9.64 7.46 4.30
66 61.26 92.18 83.04 64.13 3.56 9.42 7.33 4.36
66.5 61.59 92.28 83.36 64.77 3.47 9.20 7.20 4.42
67 61.91 92.36 83.56 65.05 3.38 8.99 7.08 4.48
67.5 62.61 92.62 84.07 66.07 3.29 8.77 6.95 4.54
68 62.84 92.69 84.25 66.33 3.20 8.55 6.82 4.60
68.5 63.15 92.79 84.45 66.70 3.10 8.33 6.69 4.66
69 63.86 92.96 84.89 67.50 3.01 8.12 6.56 4.72
69.5 64.30 93.06 85.16 68.00 2.92 7.90 6.43 4.78
70 64.71 93.19 85.43 68.52 2.83 7.68 6.30 4.84
70.5 65.15 93.34 85.70 68.92 2.77 7.51 6.15 4.71
71 65.50 93.44 85.94 69.32 2.71 7.34 5.99 4.58
71.5 65.82 93.54 86.15 69.68 2.66 7.16 5.84 4.45
72 66.57 93.71 86.59 70.58 2.60 6.99 5.69 4.32
73 67.42 93.98 87.01 71.73 2.49 6.64 5.38 4.05
73.5 67.80 94.06 87.20 72.01 2.43 6.47 5.22 3.92
74 68.23 94.20 87.40 72.49 2.37 6.30 5.07 3.79
74.5 68.99 94.39 87.83 73.20 2.32 6.12 4.92 3.66
75 69.68 94.60 88.21 73.78 2.26 5.95 4.76 3.52
75.5 70.15 94.72 88.46 74.32 2.21 5.78 4.61 3.39
76 70.58 94.82 88.67 74.73 2.15 5.60 4.46 3.26
76.5 71.14 94.98 88.94 75.25 2.09 5.43 4.30 3.13
77 72.23 95.26 89.60 76.81 2.04 5.26 4.15 3.00
78 73.26 95.47 90.09 77.69 1.92 4.91 3.84 2.73
78.5 73.70 95.53 90.26 78.06 1.87 4.74 3.69 2.60
79 74.34 95.65 90.53 78.54 1.81 4.57 3.53 2.47
79.5 74.78 95.74 90.78 79.03 1.75 4.39 3.38 2.34
80 75.34 95.90 91.08 79.58 1.70 4.22 3.22 2.20
80.5 75.95 96.11 91.36 80.09 1.69 4.27 3.16 2.15
81 77.02 96.30 91.79 81.04 1.68 4.32 3.10 2.09
81.5 77.50 96.39 92.02 81.54 1.66 4.37 3.04 2.03
82 77.97 96.48 92.21 81.99 1.65 4.42 2.97 1.98
82.5 78.49 96.60 92.43 82.54 1.64 4.47 2.91 1.92
83 79.02 96.71 92.64 82.99 1.63 4.52 2.85 1.86
83.5 79.74 96.85 92.91 83.53 1.62 4.57 2.79 1.80
84 80.59 97.00 93.30 84.29 1.61 4.62 2.72 1.75
84.5 81.06 97.10 93.52 84.61 1.60 4.67 2.66 1.69
85 81.54 97.21 93.69 84.98 1.58 4.72 2.60 1.63
85.5 82.51 97.42 94.11 85.71 1.57 4.77 2.53 1.58
86 83.07 97.51 94.28 86.08 1.56 4.82 2.47 1.52
86.5 83.75 97.64 94.62 86.72 1.55 4.87 2.41 1.46
87 84.16 97.73 94.74 87.02 1.54 4.92 2.35 1.41
87.5 84.97 97.89 95.03 87.67 1.53 4.97 2.28 1.35
88 85.37 97.93 95.19 88.02 1.52 5.02 2.22 1.29
88.5 86.18 98.05 95.46 88.67 1.50 5.07 2.16 1.23
89 86.62 98.11 95.58 89.10 1.49 5.13 2.10 1.18
89.5 87.55 98.24 95.88 89.82 1.48 5.18 2.03 1.12
90 88.04 98.31 96.05 90.18 1.47 5.23 1.97 1.06
90.5 88.51 98.35 96.24 90.59 1.44 5.01 1.92 1.05
91 88.81 98.38 96.32 90.88 1.41 4.80 1.86 1.04
91.5 89.28 98.44 96.46 91.27 1.38 4.59 1.81 1.02
92 89.98 98.57 96.71 91.76 1.35 4.37 1.75 1.01
93 90.97 98.73 97.03 92.56 1.30 3.95 1.64 0.98
93.5 91.82 98.85 97.35 93.19 1.27 3.73 1.58 0.97
94 92.52 98.97 97.57 93.69 1.24 3.52 1.53 0.95
94.5 93.68 99.12 97.93 94.53 1.21 3.31 1.47 0.94
95 94.57 99.21 98.21 95.20 1.18 3.10 1.42 0.93
95.5 94.92 99.25 98.34 95.46 1.15 2.88 1.36 0.91
96 95.85 99.38 98.64 96.28 1.13 2.67 1.31 0.90
96.5 96.11 99.42 98.71 96.50 1.10 2.46 1.25 0.88
97 96.77 99.51 98.92 97.12 1.07 2.24 1.20 0.87
97.5 97.69 99.65 99.24 97.93 1.04 2.03 1.14 0.86
98 98.94 99.89 99.66 98.94 1.01 1.82 1.09 0.84
98.5 99.62 99.95 99.88 99.61 0.98 1.60 1.03 0.83
99 99.91 99.99 99.98 99.89 0.95 1.39 0.98 0.82
99.5 99.98 100.00 100.00 99.94 0.93 1.18 0.92 0.80
100 100.00 100.00 100.00 100.00 0.90 0.96 0.87 0.79
"""
# END GENERATED

LIU_GROUPS = ("White", "Black")
"""The two groups Liu et al. 2018 study (population shares from :data:`TOTALS`)."""


@lru_cache(maxsize=1)
def raw_table() -> dict[str, np.ndarray]:
    """The embedded table as arrays: ``transrisk`` (S,), ``cdf`` (S, 4) and ``default`` (S, 4), in percent."""
    a = np.array([[float(v) for v in line.split()] for line in _TABLE.strip().splitlines()])
    return {"transrisk": a[:, 0], "cdf": a[:, 1:5], "default": a[:, 5:9]}


def transrisk_to_fico(x) -> np.ndarray:
    """Liu et al.'s map of TransRisk percentiles (0..100) onto FICO scores (300..850)."""
    scores = np.array([s for s, _ in FICO_BANDS], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum([p for _, p in FICO_BANDS[:-1]])])
    cum[-1] = 100.0  # the published bands sum to 100.0 up to rounding
    return np.interp(np.asarray(x, dtype=float), cum, scores)


@dataclass(frozen=True)
class Population:
    """Score distributions of lending groups on a grid of score bins.

    ``pmf[g, b]`` is the fraction of group ``g`` in bin ``b``, ``repay[g, b]`` its
    probability of repaying a loan, ``shares[g]`` the group's share of applicants.
    Bin ``b`` covers ``[edges[b], edges[b+1])`` and has centre ``centers[b]``.
    """

    groups: tuple[str, ...]
    shares: np.ndarray
    pmf: np.ndarray
    repay: np.ndarray
    edges: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def num_bins(self) -> int:
        return self.pmf.shape[1]

    def mean_scores(self) -> np.ndarray:
        return self.pmf @ self.centers


@lru_cache(maxsize=8)
def _fico_population(groups: tuple[str, ...]) -> Population:
    t = raw_table()
    cols = [GROUPS.index(g) for g in groups]
    fico = transrisk_to_fico(t["transrisk"])
    edges = np.arange(SCORE_MIN, SCORE_MAX + BIN_WIDTH / 2, BIN_WIDTH)
    centers = 0.5 * (edges[:-1] + edges[1:])
    pmf, repay = [], []
    for c in cols:
        cdf = np.interp(edges, fico, t["cdf"][:, c] / 100.0)
        cdf[0], cdf[-1] = 0.0, 1.0  # the atom at the lowest score falls in the first bin
        pmf.append(np.diff(cdf))
        repay.append(np.interp(centers, fico, 1.0 - t["default"][:, c] / 100.0))
    totals = np.array([TOTALS[c] for c in cols], dtype=float)
    pmf_a, rep, shares = np.array(pmf), np.array(repay), totals / totals.sum()
    pmf_a /= pmf_a.sum(1, keepdims=True)
    for arr in (pmf_a, rep, shares, edges):
        arr.setflags(write=False)
    return Population(tuple(groups), shares, pmf_a, rep, edges)


def fico_population(groups: str | tuple[str, ...] | list[str] = "liu") -> Population:
    """The FICO groups on 5-point bins of 300..850.

    ``groups``: ``"liu"`` (White and Black, as in Liu et al. 2018), ``"all"`` (the four
    groups, as in Hardt et al. 2016) or a sequence of names from :data:`GROUPS`.
    Shares are proportional to the groups' sizes in the sample.
    """
    if isinstance(groups, str):
        if groups == "liu":
            names = LIU_GROUPS
        elif groups == "all":
            names = GROUPS
        else:
            raise ValueError(f"groups={groups!r} is not allowed; use 'liu', 'all' or a list of names from {list(GROUPS)}")
    else:
        names = tuple(groups)
        bad = [g for g in names if g not in GROUPS]
        if bad or len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(
                f"groups={list(names)!r} is not allowed: give at least two distinct names from {list(GROUPS)}"
                + (f" ({bad[0]!r} is unknown)" if bad else "")
            )
    return _fico_population(names)
