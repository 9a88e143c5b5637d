"""The SimPy model of a federated fleet: the engine (server and client processes), the network, edge
servers, and the time, energy and thermal charges of each device. Its inputs are its own
(``inputs.py``: ``EngineConfig`` and the ``Learner`` protocol); of the rest it imports only the
contract the learning shares (``algorithms/message.py``, ``algorithms/work.py``), the devices and
``edgefed.streams``, never the application in ``edgefed/`` that builds, runs and records it."""
