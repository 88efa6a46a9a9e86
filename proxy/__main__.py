from proxy.app.cli import main

main()
