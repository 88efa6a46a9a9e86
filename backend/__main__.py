from backend.app import main

main()
