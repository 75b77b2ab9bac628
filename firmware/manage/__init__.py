# Managing the router: api.py (plain data in and out, for the REPL's nr and a status
# page), config.py (load, validate, save natrouter.json), runner.py (the router's start,
# restart and stop), store.py (atomic files).
