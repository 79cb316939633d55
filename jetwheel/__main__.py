from jetwheel.cli import main

main()
