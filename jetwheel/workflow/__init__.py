"""The use cases behind the tasks, one module per family of tasks, each composed from the modules
that do the work. They take parsed values and return values (or yield what long work has to say);
only the door (jetwheel.cli) prints. Import the module a task needs (jetwheel.workflow.build, ...):
this package loads none of them, so a task starts with only what it uses."""
