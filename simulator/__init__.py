"""The SimPy model of a federated fleet: the engine (server and client processes), the network, edge
servers, and the time, energy and thermal charges of each device. It imports only the algorithms'
contract (base, message, work), the devices and ``edgefed.streams``, never the application in
``edgefed/`` that builds, runs and records it."""
