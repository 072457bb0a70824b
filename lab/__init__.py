"""The lab: what makes and measures models, apart from what serves them (`engine/`).

    python -m lab.data --out data/builtin --seed 0           # generate the training set
    python -m lab.train --config lab/configs/builtin.json    # train the built-in model
    python -m lab.evaluate --model runs/builtin/model --data data/builtin
    python -m lab.bench                                      # engine against transformers' generate
    python -m lab.speech.bench                               # speech recognition and voice latency

`lab` imports `engine`; `engine` never imports `lab` (tests/test_layout.py checks it).
"""
