"""trainlight in the trainers people already use: one callback (or pruner, or stopper) each.

Each module imports its framework at import time and says how to install it if missing; this
package itself imports nothing, so `import trainlight` never pulls a framework in.
"""
