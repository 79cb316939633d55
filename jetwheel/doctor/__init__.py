"""jetwheel doctor: which installed package will fail in an existing environment or image, and why,
judged before anything is imported with verify's rules against the real files there.

`scan` (with `ldso`, `facts`, `gpu`) runs inside the examined interpreter and needs only the standard
library and `packaging`; `carry` packs it as a zipapp for another interpreter or an image; `run`
starts it and `report` turns its findings into one line per broken item and the exit code.
This package's __init__ imports nothing: the zipapp imports it inside images."""
