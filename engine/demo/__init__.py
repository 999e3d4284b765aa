"""The embedded default: a synthetic world with planted bias, a tiny CLIP trained on it, and
``vlaudit demo``, which runs the whole engine on that world and checks what it measures against
the planted truth.

- ``engine.demo.world.generate_world(DIR, WorldConfig())``: the toy world on disk
- ``python -m engine.demo.train``: retrain the shipped checkpoint deterministically
- ``engine.demo.run.run_demo(DemoConfig())``: the demo pipeline (``vlaudit demo``)

The world is synthetic: it shows how the engine works and proves nothing about real models.
"""
